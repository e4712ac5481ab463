"""FHIR search: the search parameters this server indexes and the parsing of search queries.

Below the store (which indexes and queries with them) and the facade (which serves them)."""
