"""Exchange with EHR FHIR servers: authentication (incl. SMART Backend Services) and the FHIR client.

The durable outbox and the worker that drain records into these clients come with issue 7.
"""
