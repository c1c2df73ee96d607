"""Dates as the jobs pass them: ISO strings (YYYY-MM-DD), the form of --as-of and of partitions."""
from __future__ import annotations

from datetime import date, timedelta

from ecomlake.errors import ConfigError


def parse_as_of(value: str, flag: str = "--as-of") -> str:
    """A date flag's value, checked and normalised; the error names the flag."""
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise ConfigError(f"{flag} must be a date YYYY-MM-DD, got '{value}'") from None


def add_days(day: str, days: int) -> str:
    """The ISO date `days` after `day` (before it when negative)."""
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()
