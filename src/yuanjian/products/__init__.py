"""products capability."""
