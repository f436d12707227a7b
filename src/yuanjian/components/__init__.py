"""components capability."""
