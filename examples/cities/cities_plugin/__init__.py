"""Stages of the cities example (importable because it sits beside the workflow file)."""
