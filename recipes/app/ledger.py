"""A small SQLite index of the runs and endpoints launched from this machine.

The provider holds the truth about a run (a cloud, or a local run directory) and
an endpoint; the ledger remembers which provider and ids belong to a run id or an
endpoint name, so `status`, `logs`, `cancel`, `endpoint status|invoke|delete` work
from any shell.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from providers.base import EndpointRef, Plan, RunRef, State
from recipes.errors import Problem, RecipeInputError, did_you_mean
from recipes.home import runs_dir

# The schema, as numbered steps: a ledger records the last step applied in SQLite's
# user_version, and opening it applies the steps it lacks, in order, in one transaction.
# A ledger written by an earlier version (version 0: only `runs`, made before versions
# were recorded) keeps working after an upgrade. Add a step; never edit one that shipped.
MIGRATIONS: tuple[str, ...] = (
    # 1: runs launched from here (the first schema; IF NOT EXISTS for version-0 ledgers)
    """
    CREATE TABLE IF NOT EXISTS runs (
        run_id      TEXT PRIMARY KEY,
        provider    TEXT NOT NULL,
        recipe_name TEXT NOT NULL,
        recipe_path TEXT NOT NULL,
        ids         TEXT NOT NULL,
        state       TEXT NOT NULL,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    )
    """,
    # 2: endpoints deployed from here: (provider, name) -> the current deployment
    """
    CREATE TABLE IF NOT EXISTS endpoints (
        provider    TEXT NOT NULL,
        endpoint    TEXT NOT NULL,
        deployment  TEXT NOT NULL,
        run_id      TEXT NOT NULL,
        ids         TEXT NOT NULL,
        plan        TEXT NOT NULL,
        created_at  REAL NOT NULL,
        PRIMARY KEY (provider, endpoint)
    )
    """,
    # 3: releases (recipe release): state and every decision with its evidence, for audit
    """
    CREATE TABLE IF NOT EXISTS releases (
        release_id  TEXT PRIMARY KEY,
        provider    TEXT NOT NULL,
        endpoint    TEXT NOT NULL,
        run_id      TEXT NOT NULL,
        state       TEXT NOT NULL,
        data        TEXT NOT NULL,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    )
    """,
    # 4: the plan's estimate of each run and endpoint, kept for cost reports to reconcile
    # with billing data. usd: a run's expected cost; an endpoint's cost per hour at
    # min_replicas. detail: instance type, nodes, spot, cluster, replicas (JSON).
    """
    CREATE TABLE IF NOT EXISTS estimates (
        kind        TEXT NOT NULL,
        id          TEXT NOT NULL,
        provider    TEXT NOT NULL,
        region      TEXT NOT NULL,
        currency    TEXT NOT NULL,
        usd         REAL NOT NULL,
        hours       REAL,
        detail      TEXT NOT NULL,
        created_at  REAL NOT NULL,
        ended_at    REAL,
        PRIMARY KEY (kind, id, provider)
    )
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a ledger to SCHEMA_VERSION; refuse one written by a newer version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RecipeInputError(
            Problem(
                f"the ledger was written by a newer version of recipe (schema {version}, "
                f"this one knows {SCHEMA_VERSION})",
                file="RECIPE_HOME",
                hint="upgrade recipe-ft, or point RECIPE_HOME elsewhere",
            )
        )
    if version == SCHEMA_VERSION:
        return
    # One write transaction, taken before reading the version again: two commands opening
    # an old ledger at once migrate it once, and a ledger is never left half-migrated.
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for step in MIGRATIONS[version:]:
            conn.execute(step)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@dataclass(frozen=True)
class Entry:
    ref: RunRef
    recipe_name: str
    recipe_path: str
    state: State
    created_at: float


class Ledger:
    def __init__(self, path: Path | None = None):
        self.path = path or runs_dir() / "ledger.sqlite"

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecipeInputError(
                Problem(
                    f"cannot create {self.path.parent}: {exc.strerror}",
                    file="RECIPE_HOME",
                    hint="point RECIPE_HOME at a directory; it is created when missing",
                )
            ) from None
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            migrate(conn)
            yield conn
            conn.commit()
        finally:
            conn.close()

    def record(self, ref: RunRef, recipe_name: str, recipe_path: str, state: State) -> None:
        """Remember a run; a cloud job found again (same deterministic name) keeps its row."""
        now = time.time()
        with self._db() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    ref.run_id,
                    ref.provider,
                    recipe_name,
                    recipe_path,
                    json.dumps(ref.ids),
                    state.value,
                    now,
                    now,
                ),
            )

    def update_state(self, run_id: str, state: State) -> None:
        with self._db() as db:
            db.execute(
                "UPDATE runs SET state = ?, updated_at = ? WHERE run_id = ?",
                (state.value, time.time(), run_id),
            )

    def get(self, run_id: str) -> Entry:
        with self._db() as db:
            row = db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                known = [r[0] for r in db.execute("SELECT run_id FROM runs")]
        if row is None:
            hint = did_you_mean(run_id, known)
            raise RecipeInputError(
                f"RUN_ID: no run '{run_id}' in {self.path}"
                + (f" ({hint})" if hint else "; `recipe runs` lists them")
            )
        return _entry(row)

    def run_ids(self) -> set[str]:
        with self._db() as db:
            return {r[0] for r in db.execute("SELECT run_id FROM runs")}

    def list(self, limit: int = 50) -> list[Entry]:
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM runs ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_entry(r) for r in rows]

    # --- endpoints ----------------------------------------------------------------------

    def record_endpoint(self, ref: EndpointRef, run_id: str, plan: dict) -> None:
        """Remember an endpoint's current deployment: (provider, name) -> ids and plan."""
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO endpoints VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    ref.provider,
                    ref.endpoint,
                    ref.deployment,
                    run_id,
                    json.dumps(ref.ids),
                    json.dumps(plan),
                    time.time(),
                ),
            )
        self.record_estimate(endpoint_estimate(ref, plan))

    def find_endpoint(self, endpoint: str, provider: str | None = None) -> EndpointEntry:
        with self._db() as db:
            rows = db.execute("SELECT * FROM endpoints WHERE endpoint = ?", (endpoint,)).fetchall()
            known = [r[0] for r in db.execute("SELECT DISTINCT endpoint FROM endpoints")]
        everywhere = rows
        if provider:
            rows = [r for r in rows if r[0] == provider]
        if not rows:
            elsewhere = sorted({r[0] for r in everywhere})
            if elsewhere:
                hint = f"it is on {', '.join(elsewhere)}"
            else:
                suggestion = did_you_mean(endpoint, known)
                hint = suggestion or "`recipe endpoint list` lists them"
            raise RecipeInputError(
                f"ENDPOINT: no endpoint '{endpoint}'"
                + (f" on {provider}" if provider else "")
                + f" deployed from here ({self.path}; {hint})"
            )
        if len(rows) > 1:
            providers = ", ".join(r[0] for r in rows)
            raise RecipeInputError(
                f"ENDPOINT: '{endpoint}' exists on {providers}; pick one with --provider"
            )
        return _endpoint_entry(rows[0])

    def forget_endpoint(self, provider: str, endpoint: str) -> None:
        with self._db() as db:
            db.execute(
                "DELETE FROM endpoints WHERE provider = ? AND endpoint = ?", (provider, endpoint)
            )
        self.end_estimate("endpoint", endpoint, provider)

    # --- estimates (cost reports reconcile billing data with them) ----------------------

    def record_estimate(self, estimate: EstimateRow) -> None:
        """Keep the plan's estimate of a run or endpoint; a redeploy replaces it."""
        e = estimate
        with self._db() as db:
            db.execute(
                "INSERT OR REPLACE INTO estimates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    e.kind,
                    e.id,
                    e.provider,
                    e.region,
                    e.currency,
                    e.usd,
                    e.hours,
                    json.dumps(e.detail),
                    e.created_at,
                    e.ended_at,
                ),
            )

    def end_estimate(self, kind: str, id: str, provider: str, at: float | None = None) -> None:
        """An endpoint was deleted: its hourly estimate stops accruing."""
        with self._db() as db:
            db.execute(
                "UPDATE estimates SET ended_at = ? WHERE kind = ? AND id = ? AND provider = ?",
                (at or time.time(), kind, id, provider),
            )

    def estimates(self) -> list[EstimateRow]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM estimates ORDER BY created_at").fetchall()
        return [
            EstimateRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8], r[9])
            for r in rows
        ]

    def run_times(self) -> dict[str, tuple[float, float, State]]:
        """run id -> (submitted, last state change, state): node-hours for cluster splits."""
        with self._db() as db:
            rows = db.execute("SELECT run_id, created_at, updated_at, state FROM runs").fetchall()
        return {r[0]: (r[1], r[2], State(r[3])) for r in rows}

    # --- releases -----------------------------------------------------------------------

    def save_release(
        self, release_id: str, provider: str, endpoint: str, run_id: str, state: str, data: dict
    ) -> None:
        now = time.time()
        with self._db() as db:
            db.execute(
                "INSERT INTO releases VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(release_id) "
                "DO UPDATE SET state = excluded.state, data = excluded.data, "
                "updated_at = excluded.updated_at",
                (release_id, provider, endpoint, run_id, state, json.dumps(data), now, now),
            )

    def releases(
        self, endpoint: str | None = None, provider: str | None = None
    ) -> list[ReleaseRow]:
        """Releases, newest first; of one endpoint when named."""
        query, args = "SELECT * FROM releases", []
        conditions = []
        if endpoint:
            conditions.append("endpoint = ?")
            args.append(endpoint)
        if provider:
            conditions.append("provider = ?")
            args.append(provider)
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        with self._db() as db:
            rows = db.execute(query + " ORDER BY created_at DESC", args).fetchall()
        return [
            ReleaseRow(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7]) for r in rows
        ]

    def endpoints(self) -> list[EndpointEntry]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM endpoints ORDER BY created_at DESC").fetchall()
        return [_endpoint_entry(r) for r in rows]


@dataclass(frozen=True)
class EstimateRow:
    kind: str  # run | endpoint
    id: str  # run id | endpoint name
    provider: str
    region: str
    currency: str
    usd: float  # run: the expected cost; endpoint: per hour at min_replicas
    hours: float | None  # run: the expected hours; endpoint: None
    detail: dict  # instance_type, nodes, spot, cluster, min/max replicas, basis
    created_at: float
    ended_at: float | None = None


@dataclass(frozen=True)
class ReleaseRow:
    release_id: str
    provider: str
    endpoint: str
    run_id: str
    state: str
    data: dict  # the release's whole record (recipes.app.releases.Release.to_dict())
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class EndpointEntry:
    ref: EndpointRef
    run_id: str
    plan: dict  # the plan deploy sent (EndpointPlan.to_dict())
    created_at: float


def run_estimate(plan: Plan, at: float | None = None) -> EstimateRow:
    """What a run's plan expected to cost: spot when the plan runs on spot."""
    est, compute = plan.estimate, plan.compute
    spot = bool(compute.get("spot")) and est.spot_usd is not None
    return EstimateRow(
        kind="run",
        id=plan.identity.run_id,
        provider=plan.provider,
        region=str(compute.get("region", "")),
        currency=est.currency,
        usd=float(est.spot_usd if spot else est.on_demand_usd),
        hours=est.hours,
        detail={
            k: compute[k]
            for k in ("instance_type", "nodes", "spot", "cluster", "accelerator")
            if k in compute
        }
        | {"basis": est.basis},
        created_at=at or time.time(),
    )


def endpoint_estimate(ref: EndpointRef, plan: dict) -> EstimateRow:
    """An endpoint's cost per hour at min_replicas, from the plan deploy sent."""
    est = plan.get("estimate", {})
    compute = plan.get("compute", {})
    return EstimateRow(
        kind="endpoint",
        id=ref.endpoint,
        provider=ref.provider,
        region=str(plan.get("region", "")),
        currency=str(est.get("currency", "USD")),
        usd=float(est.get("hourly_usd", 0.0)),
        hours=None,
        detail={
            "instance_type": est.get("instance_type"),
            "deployment": ref.deployment,
            "run_id": plan.get("artifact", {}).get("run_id"),
            "monthly_usd": est.get("monthly_usd"),
            "max_monthly_usd": est.get("max_monthly_usd"),
        }
        | {k: compute[k] for k in ("min_replicas", "max_replicas") if k in compute},
        created_at=time.time(),
    )


def _endpoint_entry(row: tuple) -> EndpointEntry:
    provider, endpoint, deployment, run_id, ids, plan, created_at = row
    return EndpointEntry(
        ref=EndpointRef(provider, endpoint, deployment, json.loads(ids)),
        run_id=run_id,
        plan=json.loads(plan),
        created_at=created_at,
    )


def _entry(row: tuple) -> Entry:
    run_id, provider, recipe_name, recipe_path, ids, state, created_at, _ = row
    return Entry(
        ref=RunRef(provider=provider, run_id=run_id, ids=json.loads(ids)),
        recipe_name=recipe_name,
        recipe_path=recipe_path,
        state=State(state),
        created_at=created_at,
    )
