"""The FHIR R4 REST facade's core: interactions, search parameters and queries, clinic-record links."""
