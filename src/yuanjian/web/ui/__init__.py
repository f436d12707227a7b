"""Server-rendered portal (Jinja2 + htmx)."""
