"""The ledger keeps working across upgrades: an old file is migrated in place, once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from providers.base import EndpointRef, RunRef, State
from recipes.app.ledger import SCHEMA_VERSION, Ledger
from recipes.errors import RecipeInputError

# The ledger as the first release wrote it (before schema versions were recorded).
VERSION_0 = """
CREATE TABLE runs (
    run_id      TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,
    recipe_name TEXT NOT NULL,
    recipe_path TEXT NOT NULL,
    ids         TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL
);
INSERT INTO runs VALUES ('old-run-1', 'local', 'old', 'old.yaml', '{"run_dir": "/tmp/x"}',
                         'succeeded', 1.0, 2.0);
"""


def version_of(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def test_a_ledger_from_an_earlier_version_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as conn:
        conn.executescript(VERSION_0)
    assert version_of(path) == 0
    ledger = Ledger(path)
    old = ledger.get("old-run-1")  # its runs are still there
    assert old.ref == RunRef("local", "old-run-1", {"run_dir": "/tmp/x"})
    assert old.state == State.SUCCEEDED
    assert version_of(path) == SCHEMA_VERSION
    ledger.record_endpoint(EndpointRef("local", "ep", "ep-1"), "old-run-1", {"plan": 1})
    assert ledger.find_endpoint("ep").run_id == "old-run-1"
    Ledger(path).list()  # a second open applies nothing
    assert version_of(path) == SCHEMA_VERSION


def test_a_new_ledger_starts_at_the_current_version(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    assert Ledger(path).list() == []
    assert version_of(path) == SCHEMA_VERSION


def test_a_ledger_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RecipeInputError, match="newer version of recipe"):
        Ledger(path).list()
