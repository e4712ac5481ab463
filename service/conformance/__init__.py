"""FHIR conformance resources: the R4 core package, our implementation guide, snapshots, packaging."""
