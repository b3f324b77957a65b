"""Plugin discovery and the built-in plugins (stage types)."""
