"""db capability."""
