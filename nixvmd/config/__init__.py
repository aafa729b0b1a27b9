"""Configuration: the TOML file, validated into frozen dataclasses."""
