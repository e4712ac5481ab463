"""HTTP layer: blueprints that parse and answer requests, then call the core."""
