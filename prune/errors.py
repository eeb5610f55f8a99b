"""Errors the entry points report as one line (exit status 2)."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names key, value and allowed set."""
