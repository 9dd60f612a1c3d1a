"""Configuration: the TOML schema (pydantic), value types, loading with drop-ins."""
