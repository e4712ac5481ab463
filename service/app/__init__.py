"""The application layer: the runtime that wires the service together and the flows that cross layers."""
