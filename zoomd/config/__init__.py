"""Configuration: defined once (runtime), validated with pydantic (schema), drop-ins."""
