"""The clinic-side record model: schemas, clinical rules and intake (no Flask here)."""
