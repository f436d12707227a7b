"""resources capability."""
