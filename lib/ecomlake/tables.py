"""Where each table lives (<lake_root>/<layer>/<name>) and which job produces it."""
from __future__ import annotations

from dataclasses import dataclass

LAYERS = ("bronze", "silver", "gold", "quarantine")


@dataclass(frozen=True)
class Table:
    layer: str
    name: str
    producer: str  # the job that writes it: named in "run X first" errors

    @property
    def id(self) -> str:
        return f"{self.layer}/{self.name}"

    def path(self, lake_root: str) -> str:
        return f"{lake_root.rstrip('/')}/{self.layer}/{self.name}"


BRONZE_EVENTS = Table("bronze", "events", "ingest")
BRONZE_INGEST_LOG = Table("bronze", "ingest_log", "ingest")
QUARANTINE_EVENTS = Table("quarantine", "events", "ingest / clean")
SILVER_EVENTS = Table("silver", "events", "clean")
SILVER_SESSIONS = Table("silver", "sessions", "sessionize")
GOLD_DAILY_FUNNEL = Table("gold", "daily_funnel", "sessionize")
