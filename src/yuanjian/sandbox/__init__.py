"""sandbox capability."""
