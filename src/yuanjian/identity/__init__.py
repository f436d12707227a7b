"""identity capability."""
