"""Exchange with EHR FHIR servers: the endpoints, authentication (incl. SMART Backend Services), the FHIR
client, the durable outbox and the worker that drains it, pulling a patient's records, and the sandbox check.
"""
