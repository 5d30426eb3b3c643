"""Logical plan: nodes built by the Stream API, expression checks, explain()."""
