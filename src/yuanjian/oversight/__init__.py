"""oversight capability."""
