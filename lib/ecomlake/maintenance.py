"""Lake housekeeping shared by the `maintain` and `forget` jobs.

Tables are found by walking the lake (a directory with a `_delta_log` child is a Delta table), so
tables that tables.py does not list are maintained too. VACUUM's retention must never drop files
that a later incremental run (ops/job_runs) or a recorded model run (gold/model_runs) still needs:
`retention_violations` is a pure function over what those readers need and when each needed
version was committed, so it is tested without Spark.

`purge_log_history` removes a table's transaction-log history (old commits carry per-file min/max
stats; `_change_data` files carry deleted rows), following the Delta protocol's "Metadata
Cleanup" procedure with a cut-off at a checkpoint written just now. Delta's own cleanup
(`delta.logRetentionDuration`) cannot do it today: it truncates its cut-off to midnight UTC, so a
commit made today is never removed before tomorrow.
"""
from __future__ import annotations

import logging
import math
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ecomlake import lake, ops, tables
from ecomlake.errors import EcomlakeError
from ecomlake.spark import conf_set

log = logging.getLogger(__name__)

RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
DELTA_SAFE_RETENTION_HOURS = 168.0  # below this Delta refuses VACUUM unless RETENTION_CHECK is off
RETENTION_MARGIN_HOURS = 0.25  # the shortest allowed retention leaves this much time to reach VACUUM
LISTING_PARALLELISM = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
# commits, checksums, classic / multi-part / UUID-named checkpoints of a version
_LOG_FILE = re.compile(r"^(\d{20})\.(json|crc|checkpoint\.parquet|checkpoint\.\d+\.\d+\.parquet"
                       r"|checkpoint\.[^.]+\.(json|parquet))$")
_COMPACTED_LOG_FILE = re.compile(r"^(\d{20})\.(\d{20})\.compacted\.json$")


# ---- finding things in the lake --------------------------------------------------------------


@dataclass(frozen=True)
class LakeDir:
    id: str    # path relative to the lake root: "silver/events", "models/recommend/<run>/<attempt>/user_index"
    path: str  # fully qualified (file:/..., s3a://...)


def qualified(spark: SparkSession, path: str) -> str:
    _, hpath, fs = lake._hadoop(spark, path)
    return str(fs.makeQualified(hpath).toString()).rstrip("/")


def _relative(root: str, path: str) -> str:
    return path[len(root):].lstrip("/")


def walk_lake(spark: SparkSession, lake_root: str) -> tuple[list[LakeDir], list[LakeDir]]:
    """(Delta tables, plain Parquet datasets) under the lake root, each sorted by id.

    A Delta table is a directory with a `_delta_log` child (not descended into). A Parquet
    dataset is a directory holding `*.parquet` files (or `k=v` partition directories that do);
    hidden names (`_`, `.`) are skipped.
    """
    root = qualified(spark, lake_root)
    jvm, hroot, fs = lake._hadoop(spark, root)
    if not fs.exists(hroot):
        return [], []
    delta, parquet = [], set()
    pending = [hroot]
    while pending:
        directory = pending.pop()
        children = fs.listStatus(directory)
        names = {c.getPath().getName(): c for c in children}
        if "_delta_log" in names and names["_delta_log"].isDirectory():
            path = str(directory.toString())
            delta.append(LakeDir(_relative(root, path), path))
            continue
        if any(c.isFile() and c.getPath().getName().endswith(".parquet")
               and not c.getPath().getName().startswith(("_", ".")) for c in children):
            dataset = directory
            while "=" in dataset.getName() and str(dataset.getParent().toString()) != root:
                dataset = dataset.getParent()  # a partition directory: the dataset is above it
            parquet.add(str(dataset.toString()))
            continue
        for child in children:
            name = child.getPath().getName()
            if child.isDirectory() and not name.startswith(("_", ".")):
                pending.append(child.getPath())
    return (sorted(delta, key=lambda d: d.id),
            sorted((LakeDir(_relative(root, p), p) for p in parquet), key=lambda d: d.id))


def select_tables(found: list[LakeDir], wanted: list[str] | None) -> list[LakeDir]:
    """The tables named in `wanted` (ids like silver/events), or all; unknown names are an error."""
    if not wanted:
        return found
    by_id = {t.id: t for t in found}
    unknown = [w for w in wanted if w not in by_id]
    if unknown:
        raise EcomlakeError(f"no Delta table {', '.join(unknown)} in the lake; "
                            f"tables: {', '.join(by_id) or '(none)'}")
    return [by_id[w] for w in wanted]


def directory_usage(spark: SparkSession, path: str) -> tuple[int, int]:
    """(files, bytes) of everything under a directory, `_delta_log` and `_change_data` included."""
    _, hpath, fs = lake._hadoop(spark, path)
    if not fs.exists(hpath):
        return 0, 0
    summary = fs.getContentSummary(hpath)
    return int(summary.getFileCount()), int(summary.getLength())


# ---- what readers still need ---------------------------------------------------------------


@dataclass(frozen=True)
class Need:
    table: str       # table id, e.g. silver/events
    version: int     # the oldest Delta version the reader will read
    needed_by: str   # who: "job sessionize (next incremental run)", "model run 1a2b... (recommend/als)"


@dataclass(frozen=True)
class Violation:
    need: Need
    committed_at: float   # epoch seconds of the needed version's commit
    shortest_hours: int   # the shortest retention that keeps it

    def message(self, now: float) -> str:
        age = (now - self.committed_at) / 3600
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.committed_at))
        return (f"{self.need.table} version {self.need.version} (committed {when}, {age:.1f} h ago) "
                f"is needed by {self.need.needed_by}: keep at least {self.shortest_hours} h")


def retention_violations(needs: list[Need], commit_times: dict[str, dict[int, float]],
                         latest_versions: dict[str, int], retention_hours: float, now: float) -> list[Violation]:
    """Needs that VACUUM with this retention could break.

    VACUUM deletes files removed from the table more than `retention_hours` ago, so a version
    whose commit is older than now - retention may lose files its snapshot reads. A need on the
    current version is safe (VACUUM never deletes current files), and so is a version that is no
    longer in the log (its history was purged: there is nothing left to protect)."""
    violations = []
    for need in needs:
        latest = latest_versions.get(need.table)
        if latest is None or need.version >= latest:
            continue
        committed = commit_times.get(need.table, {}).get(need.version)
        if committed is None:
            continue
        age_hours = (now - committed) / 3600
        if age_hours > retention_hours:
            violations.append(Violation(need, committed, math.ceil(age_hours + RETENTION_MARGIN_HOURS)))
    return violations


def reader_needs(spark: SparkSession, lake_root: str) -> list[Need]:
    """Versions that incremental readers (ops/job_runs) and the newest model run of each
    (task, model) in gold/model_runs still read."""
    needs = []
    oldest = ops.oldest_needed_versions(spark, lake_root)
    if oldest:
        newest_per_job = (lake.read_table(spark, lake_root, tables.OPS_JOB_RUNS)
                          .where(F.col("status") != "failed")
                          .select("job", "ended_at", F.explode("input_versions").alias("table", "version"))
                          .groupBy("job", "table").agg(F.max_by("version", "ended_at").alias("version"))
                          .collect())
        for table, version in sorted(oldest.items()):
            jobs = sorted(r["job"] for r in newest_per_job if r["table"] == table and r["version"] == version)
            who = (f"job {', '.join(jobs)} (its next incremental run reads from it)" if jobs
                   else "an incremental reader recorded in ops/job_runs")
            needs.append(Need(table, version, who))
    if lake.table_exists(spark, tables.GOLD_MODEL_RUNS.path(lake_root)):
        runs = (lake.read_table(spark, lake_root, tables.GOLD_MODEL_RUNS)
                .where(F.col("input_versions").isNotNull())
                .groupBy("task", "model")
                .agg(F.max_by(F.struct("run_id", "input_versions"), "created_at").alias("newest"))
                .select("task", "model", "newest.run_id", F.explode("newest.input_versions").alias("table", "version"))
                .collect())
        for r in sorted(runs, key=lambda r: (r["table"], r["task"], r["model"])):
            needs.append(Need(r["table"], int(r["version"]),
                              f"model run {r['run_id']} ({r['task']}/{r['model']}, gold/model_runs)"))
    return needs


def latest_version(spark: SparkSession, path: str) -> int:
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, path).history(1).select("version").head()[0])


def commit_times(spark: SparkSession, path: str, versions: set[int]) -> tuple[int, dict[int, float]]:
    """(latest version, {version: commit time in epoch seconds}) for the versions still in the log."""
    from delta.tables import DeltaTable

    rows = (DeltaTable.forPath(spark, path).history()
            .select("version", F.col("timestamp").cast("double").alias("ts")).collect())
    return max(int(r["version"]) for r in rows), {int(r["version"]): float(r["ts"]) for r in rows
                                                   if int(r["version"]) in versions}


def check_retention(spark: SparkSession, lake_root: str, targets: list[LakeDir], retention_hours: float) -> list[Need]:
    """Raise EcomlakeError naming every table, version and reader that `retention_hours` would
    break (and the shortest allowed retention); return the needs that were checked."""
    if retention_hours < 0:
        raise EcomlakeError(f"retention must not be negative, got {retention_hours} h")
    needs = [n for n in reader_needs(spark, lake_root) if n.table in {t.id for t in targets}]
    by_table = {t.id: t for t in targets}
    times, latest = {}, {}
    for table_id in sorted({n.table for n in needs}):
        latest[table_id], times[table_id] = commit_times(
            spark, by_table[table_id].path, {n.version for n in needs if n.table == table_id})
        gone = [n for n in needs if n.table == table_id and n.version < latest[table_id]
                and n.version not in times[table_id]]
        for n in gone:
            log.info("%s version %d (needed by %s) is no longer in the log (history purged or expired): "
                     "that reader must do a full refresh", table_id, n.version, n.needed_by)
    now = time.time()
    violations = retention_violations(needs, times, latest, retention_hours, now)
    if violations:
        shortest = max(v.shortest_hours for v in violations)
        raise EcomlakeError(
            f"retention {retention_hours:g} h is too short: VACUUM would delete files that readers still need:\n  "
            + "\n  ".join(v.message(now) for v in violations)
            + f"\nthe shortest allowed retention is {shortest} h (--retention-hours {shortest} or "
              f"maintain.retention_hours); nothing was changed")
    return needs


# ---- VACUUM and log purge ----------------------------------------------------------------------


@contextmanager
def retention_check_lifted(spark: SparkSession, retention_hours: float):
    """Turn Delta's VACUUM retention safety check off for one call when the retention is below
    Delta's 168 h: only after our own check (readers' needs) has passed."""
    if retention_hours >= DELTA_SAFE_RETENTION_HOURS:
        yield
        return
    with conf_set(spark, RETENTION_CHECK, "false"):
        yield


@contextmanager
def listing_parallelism_capped(spark: SparkSession):
    """VACUUM lists the table directory with spark.sql.sources.parallelPartitionDiscovery.parallelism
    tasks (10,000 by default): on a small cluster or local[*] that costs minutes of task overhead
    for a small table. Cap it at 4 tasks per core for the call."""
    cap = max(4 * spark.sparkContext.defaultParallelism, 8)
    previous = spark.conf.get(LISTING_PARALLELISM, None)
    if previous is not None and int(previous) <= cap:
        yield
        return
    with conf_set(spark, LISTING_PARALLELISM, str(cap)):
        yield


def vacuum(spark: SparkSession, path: str, retention_hours: float) -> None:
    from delta.tables import DeltaTable

    with retention_check_lifted(spark, retention_hours), listing_parallelism_capped(spark):
        DeltaTable.forPath(spark, path).vacuum(float(retention_hours))


def vacuum_dry_run(spark: SparkSession, path: str, retention_hours: float) -> int:
    """How many files VACUUM with this retention would delete (nothing is deleted)."""
    quoted = path.replace("`", "``")
    with retention_check_lifted(spark, retention_hours), listing_parallelism_capped(spark):
        return spark.sql(f"VACUUM delta.`{quoted}` RETAIN {float(retention_hours)} HOURS DRY RUN").count()


def table_properties(spark: SparkSession, path: str) -> dict[str, str]:
    from delta.tables import DeltaTable

    return dict(DeltaTable.forPath(spark, path).detail().select("properties").head()[0] or {})


def _sql_text(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _set_properties(spark: SparkSession, path: str, props: dict[str, str]) -> None:
    quoted = path.replace("`", "``")
    assignments = ", ".join(f"'{k}' = {_sql_text(v)}" for k, v in props.items())
    spark.sql(f"ALTER TABLE delta.`{quoted}` SET TBLPROPERTIES ({assignments})")


def _unset_properties(spark: SparkSession, path: str, keys: list[str]) -> None:
    quoted = path.replace("`", "``")
    spark.sql(f"ALTER TABLE delta.`{quoted}` UNSET TBLPROPERTIES IF EXISTS ({', '.join(repr(k) for k in keys)})")


PURGE_PROPERTIES = {
    # Checkpoint on the very next commit (the one setting these properties)...
    "delta.checkpointInterval": "1",
    # ...and leave out every tombstone (remove actions of the deleting commits) from it.
    "delta.deletedFileRetentionDuration": "interval 0 hours",
}


def purge_log_history(spark: SparkSession, path: str) -> int:
    """Make the table's current version its oldest one; return the first version kept.

    1. one commit sets PURGE_PROPERTIES, so Delta writes a checkpoint of exactly that version
       that holds the current files and no tombstones;
    2. every commit, checkpoint, checksum and compacted log file before that version is deleted
       (the Delta protocol's Metadata Cleanup with that checkpoint as the cut-off), so no old
       commit's stats, predicates or file list remain;
    3. one commit restores the table's own values of those properties.
    Run VACUUM RETAIN 0 HOURS before this: the data and `_change_data` files the old versions
    referenced must already be gone. Time travel to earlier versions and change data feed reads
    that start before the returned version fail afterwards.
    """
    jvm, hpath, fs = lake._hadoop(spark, path)
    log_dir = jvm.org.apache.hadoop.fs.Path(hpath, "_delta_log")
    for unsupported in ("_sidecars", "_commits", "_staged_commits"):
        d = jvm.org.apache.hadoop.fs.Path(log_dir, unsupported)
        if fs.exists(d) and len(fs.listStatus(d)) > 0:
            raise EcomlakeError(f"{path}: its log has {unsupported} (v2 checkpoints or coordinated commits); "
                                f"purging its history is not supported here")
    original = table_properties(spark, path)
    _set_properties(spark, path, PURGE_PROPERTIES)
    try:
        cutoff = latest_version(spark, path)
        checkpoint = jvm.org.apache.hadoop.fs.Path(log_dir, f"{cutoff:020d}.checkpoint.parquet")
        if not fs.exists(checkpoint):
            raise EcomlakeError(f"{path}: Delta wrote no checkpoint at version {cutoff}; its history was not purged")
        deleted = 0
        for status in fs.listStatus(log_dir):
            name = status.getPath().getName()
            plain, compacted = _LOG_FILE.match(name), _COMPACTED_LOG_FILE.match(name)
            if (plain and int(plain.group(1)) < cutoff) or (compacted and int(compacted.group(1)) <= cutoff):
                if fs.delete(status.getPath(), False):
                    deleted += 1
    finally:  # the table's own values again (a 0 h tombstone retention would also be VACUUM's default)
        restore = {k: original[k] for k in PURGE_PROPERTIES if k in original}
        if restore:
            _set_properties(spark, path, restore)
        missing = [k for k in PURGE_PROPERTIES if k not in original]
        if missing:
            _unset_properties(spark, path, missing)
    log.info("%s: history before version %d purged (%d log files deleted)", path, cutoff, deleted)
    return cutoff


def earliest_version(spark: SparkSession, path: str) -> int:
    """The oldest version still in the table's log (time travel and change feeds start here)."""
    from delta.tables import DeltaTable

    return int(DeltaTable.forPath(spark, path).history().agg(F.min("version")).head()[0])


# ---- model directories ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelDir:
    id: str
    path: str
    newest_file_ms: int


def unreferenced_model_dirs(spark: SparkSession, lake_root: str, older_than_hours: float) -> list[ModelDir]:
    """Model directories no gold/model_runs row points to, whose newest file is older than
    `older_than_hours`: run folders `models/<task>/<run_id>` no row refers into, and attempt
    folders `models/<task>/<run_id>/<attempt>` beside the attempt a row points to.

    A row pointing at the run folder itself (or a file inside it) protects the whole folder.
    Without gold/model_runs nothing is returned (no evidence of what is in use)."""
    if not lake.table_exists(spark, tables.GOLD_MODEL_RUNS.path(lake_root)):
        return []
    root = qualified(spark, lake_root)
    models = f"{root}/models"
    jvm, hmodels, fs = lake._hadoop(spark, models)
    if not fs.exists(hmodels):
        return []
    referenced = {qualified(spark, r["model_path"]) for r in
                  lake.read_table(spark, lake_root, tables.GOLD_MODEL_RUNS)
                  .where(F.col("model_path").isNotNull()).select("model_path").distinct().collect()}
    cutoff_ms = (time.time() - older_than_hours * 3600) * 1000

    def newest_ms(hpath) -> int:
        newest = fs.getFileStatus(hpath).getModificationTime()
        files = fs.listFiles(hpath, True)
        while files.hasNext():
            newest = max(newest, files.next().getModificationTime())
        return int(newest)

    candidates = []
    for task in fs.listStatus(hmodels):
        if not task.isDirectory() or task.getPath().getName().startswith(("_", ".")):
            continue
        for run in fs.listStatus(task.getPath()):
            run_path = str(run.getPath().toString())
            if not run.isDirectory() or run.getPath().getName().startswith(("_", ".")):
                continue
            if run_path in referenced or any(run_path.startswith(ref + "/") for ref in referenced):
                continue  # a row points at the run folder (or above it): all of it is in use
            inside = [ref for ref in referenced if ref.startswith(run_path + "/")]
            if not inside:
                candidates.append(run.getPath())  # no row points into this run at all
                continue
            children = {str(c.getPath().toString()): c for c in fs.listStatus(run.getPath())}
            used = {f"{run_path}/{ref[len(run_path) + 1:].split('/')[0]}" for ref in inside}
            if any(u in children and not children[u].isDirectory() for u in used):
                continue  # a row points at a file directly in the run folder (old layout): keep it all
            candidates += [c.getPath() for p, c in sorted(children.items())
                           if c.isDirectory() and p not in used and not c.getPath().getName().startswith(("_", "."))]
    out = []
    for hpath in candidates:
        newest = newest_ms(hpath)
        if newest < cutoff_ms:
            path = str(hpath.toString())
            out.append(ModelDir(_relative(root, path), path, newest))
    return sorted(out, key=lambda m: m.id)
