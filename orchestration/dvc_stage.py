"""`sidflow stage <group>`: one asset group run as one DVC stage (`dvc.yaml`), hermetic against the warehouse.

DVC versions files, but the assets read and write DuckDB tables, and the warehouse (`$SIDFLOW_HOME/warehouse.duckdb`)
is a cache that DVC does not track. So a stage:
1. loads the Parquet snapshots of the upstream groups' tables (its DVC deps) into the warehouse wherever the
   warehouse lacks a table or holds different rows, and drops the tables of its own group (DVC deletes a stage's
   outputs before it runs it; a table must not keep rows of an earlier build either);
2. materialises `group:<group>` through Dagster with its asset checks: a failed ERROR check, a failed step or an
   asset left unmaterialised exits non-zero, and DVC records nothing;
3. writes its group's tables to `<home>/data/<group>/<table>.parquet` (rows sorted, so identical content gives
   identical bytes and an unchanged rerun leaves downstream stages alone), the numbers of its materialisation and
   check metadata to `<home>/metrics/<group>.json` and the images of that metadata to `<home>/plots/<group>/`.

Which tables a group writes (its assets of kind `duckdb`), which groups are upstream of it and which params.yaml
sections it reads (the resources its assets and checks require) all come from the asset definitions.
"""

from __future__ import annotations

import base64
import inspect
import json
import math
import os
import re
import shutil
import time
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq

from assets import ALL_ASSETS, ALL_CHECKS, GROUPS
from assets.sources.raw_tables import RAW_TABLE
from assets.warehouse import record_load
from orchestration.cli import materialisations, not_materialised, run_pipeline, summarise
from orchestration.settings import REPO_ROOT, ConfigError, RunSettings, load_settings

DATA_DIR, METRICS_DIR, PLOTS_DIR = "data", "metrics", "plots"  # under SIDFLOW_HOME, beside artifacts/
TABLE_KIND = "duckdb"
# The params.yaml sections behind each resource. `warehouse` (DuckDB memory and threads) changes how fast a stage
# runs, not what it writes, so changing it reruns nothing; `home` and `io_manager` read no params.
PARAM_SECTIONS = {"source": ("synthetic",), "quality": ("quality",), "split_rules": ("splits",),
                  "features": ("features",), "sasrec": ("sasrec",), "tokenizers": ("tokenizers",),
                  "ranking": ("ranking",), "retrieval": ("retrieval",), "refresh": ("refresh",),
                  "warehouse": (), "home": (), "io_manager": ()}
# Tables whose stored row order is part of their contract: `splits` numbers a user's events by the row ids of
# `interactions` (assets/validated.py), so its snapshot keeps the stored order. Other tables are sorted on all columns.
STORED_ORDER_TABLES = frozenset({"interactions"})
INLINE_PNG = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


class StageError(RuntimeError):
    """A stage that cannot run: a missing snapshot, a group that is no stage, settings DVC would not see."""


def _specs() -> list[tuple[dg.AssetSpec, dg.AssetsDefinition]]:
    return [(spec, definition) for definition in ALL_ASSETS for spec in definition.specs]


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise StageError(f"{group!r} is not a pipeline group; the DVC stages are {', '.join(GROUPS)}")


def group_tables(group: str) -> list[str]:
    """The warehouse tables the group's assets write (their assets of kind duckdb), in definition order."""
    return [spec.key.to_user_string() for spec, _ in _specs() if spec.group_name == group and TABLE_KIND in spec.kinds]


def upstream_groups(group: str) -> list[str]:
    """Groups (in pipeline order) with an asset upstream of one of the group's assets, directly or not. A stage
    restores all of their tables: some assets read a table their declared deps only imply (e.g. every model
    reads the catalogue order from `items`)."""
    group_of = {spec.key: spec.group_name for spec, _ in _specs()}
    deps = {spec.key: {dep.asset_key for dep in spec.deps} for spec, _ in _specs()}
    todo = [key for key, name in group_of.items() if name == group]
    seen: set[dg.AssetKey] = set()
    while todo:
        for dep in deps.get(todo.pop(), ()):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    found = {group_of[key] for key in seen if key in group_of}
    return [name for name in GROUPS if name in found and name != group]


def group_modules(group: str) -> list[str]:
    """The modules that define the group's assets and checks (for the stage's code deps)."""
    names = {inspect.getmodule(definition.op.compute_fn.decorated_fn).__name__
             for spec, definition in _specs() if spec.group_name == group}
    keys = {spec.key for spec, _ in _specs() if spec.group_name == group}
    names |= {inspect.getmodule(check.op.compute_fn.decorated_fn).__name__ for check in ALL_CHECKS
              if any(key.asset_key in keys for key in check.check_keys)}
    return sorted(names)


def param_sections(group: str) -> list[str]:
    """The params.yaml sections the group's assets and checks read, through the resources they require."""
    keys = {spec.key for spec, _ in _specs() if spec.group_name == group}
    resources = set().union(*(definition.required_resource_keys for spec, definition in _specs()
                              if spec.group_name == group),
                            *(check.required_resource_keys for check in ALL_CHECKS
                              if any(key.asset_key in keys for key in check.check_keys)))
    unknown = sorted(resources - set(PARAM_SECTIONS))
    if unknown:
        raise StageError(f"group {group}: no params.yaml section known for resource(s) {', '.join(unknown)} "
                         "(orchestration/dvc_stage.py: PARAM_SECTIONS)")
    return sorted({section for key in resources for section in PARAM_SECTIONS[key]})


def _quoted_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _fingerprint(con: duckdb.DuckDBPyConnection, relation: str) -> tuple | None:
    """Columns with their types, row count and an order-free hash of the rows; None when the table is missing."""
    try:
        columns = tuple(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM {relation})")
                        .fetchall())
    except duckdb.CatalogException:
        return None
    rows = con.execute(f"SELECT count(*), sum(hash(whole_row)::HUGEINT) FROM {relation} AS whole_row").fetchone()
    return columns, *rows


def restore_inputs(con: duckdb.DuckDBPyConnection, data_dir: Path, group: str) -> list[str]:
    """Load the snapshots of the upstream groups' tables where the warehouse lacks or differs from them; returns
    the tables loaded."""
    loaded = []
    for upstream in upstream_groups(group):
        for table in group_tables(upstream):
            path = data_dir / upstream / f"{table}.parquet"
            if not path.is_file():
                raise StageError(f"{path}: no snapshot of table {table} (group {upstream}); run "
                                 f"`dvc repro {upstream}` or fetch it with `dvc pull`")
            snapshot = f"read_parquet({_quoted_path(path)})"
            if _fingerprint(con, table) == _fingerprint(con, snapshot):
                continue
            con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM {snapshot}")
            if table in RAW_TABLE.values():  # a restored raw table is a load; the volume drift check reads loads
                batch, rows = con.execute(f"SELECT any_value(load_batch), count(*) FROM {table}").fetchone()
                record_load(con, table, batch or "", rows)
            loaded.append(table)
    return loaded


def write_snapshots(con: duckdb.DuckDBPyConnection, data_dir: Path, group: str) -> list[Path]:
    """Each table of the group as one Parquet file, written in a fixed row order as one chunk, so that the same
    rows always give the same bytes."""
    tables = group_tables(group)
    directory = data_dir / group
    shutil.rmtree(directory, ignore_errors=True)  # a table the group no longer writes must not linger
    if not tables:
        return []
    directory.mkdir(parents=True)
    written = []
    for table in tables:
        order = "rowid" if table in STORED_ORDER_TABLES else "ALL"
        rows = con.sql(f"SELECT * FROM {table} ORDER BY {order}").to_arrow_table().combine_chunks()
        pq.write_table(rows, directory / f"{table}.parquet")
        written.append(directory / f"{table}.parquet")
    return written


def _numbers(value):
    """The finite numbers of a metadata value (nested in dicts too), or None when it holds none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        kept = {str(key).removeprefix("dagster/"): _numbers(item) for key, item in value.items()}
        kept = {key: item for key, item in kept.items() if item is not None}
        return kept or None
    return None


def stage_metrics(result: dg.ExecuteInProcessResult) -> dict:
    """{asset: {metadata key: number, check name: {passed, numbers of its metadata}}} of a run."""
    metrics: dict[str, dict] = {}
    for mat in materialisations(result):
        values = _numbers({key: entry.value for key, entry in mat.metadata.items()})
        metrics[mat.asset_key.to_user_string()] = values or {}
    for evaluation in result.get_asset_check_evaluations():
        checked = metrics.setdefault(evaluation.asset_key.to_user_string(), {})
        numbers = _numbers({key: entry.value for key, entry in evaluation.metadata.items()}) or {}
        checked[evaluation.check_name] = {"passed": evaluation.passed, **numbers}
    return metrics


def write_plots(result: dg.ExecuteInProcessResult, directory: Path) -> list[Path]:
    """The images the run's metadata shows in the Dagster UI, as `<asset>.<metadata key>.png`."""
    shutil.rmtree(directory, ignore_errors=True)
    written = []
    for mat in materialisations(result):
        for key, entry in mat.metadata.items():
            images = INLINE_PNG.findall(entry.value) if isinstance(entry.value, str) else []
            for index, image in enumerate(images):
                suffix = f"-{index}" if len(images) > 1 else ""
                path = directory / f"{mat.asset_key.to_user_string()}.{key}{suffix}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(base64.b64decode(image))
                written.append(path)
    return written


def stage_settings(home: str | None) -> RunSettings:
    """The settings of a stage: params.yaml of this repository (the file DVC tracks) and the synthetic catalogue.
    A run config or another params file would change what the stage computes behind DVC's back."""
    if os.environ.get("SIDFLOW_CONFIG", "").strip():
        raise StageError("SIDFLOW_CONFIG is set: DVC stages read params.yaml only; unset it to run `dvc repro`")
    params = REPO_ROOT / "params.yaml"
    named = os.environ.get("SIDFLOW_PARAMS", "").strip()
    if named and Path(named).resolve() != params.resolve():
        raise StageError(f"SIDFLOW_PARAMS={named}: DVC stages read {params}, the file dvc.yaml tracks; unset it")
    if not params.is_file():
        raise StageError(f"{params}: missing; DVC stages read their hyperparameters from it")
    try:
        return load_settings(home=home)
    except ConfigError as err:
        raise StageError(str(err)) from err


def _connect(settings: RunSettings) -> duckdb.DuckDBPyConnection:
    settings.home.home_path.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(settings.home.warehouse_path), config=settings.duckdb_settings)
    con.execute("SET TimeZone = 'UTC'")  # timestamps with time zone reach Parquet in UTC on every machine
    return con


def run_stage(group: str, home: str | None) -> int:
    """Run one group as a DVC stage; 0 when every asset of the group materialised and no ERROR check failed."""
    _check_group(group)
    settings = stage_settings(home)
    home_path = settings.home.home_path
    print(f"sidflow: stage {group} with {REPO_ROOT / 'params.yaml'} -> {home_path}")
    # As DVC does before it runs a stage: no output of an earlier run may outlive a failed one.
    for directory in (home_path / DATA_DIR / group, home_path / PLOTS_DIR / group):
        shutil.rmtree(directory, ignore_errors=True)
    (home_path / METRICS_DIR / f"{group}.json").unlink(missing_ok=True)
    with _connect(settings) as con:
        loaded = restore_inputs(con, home_path / DATA_DIR, group)
        for table in group_tables(group):
            con.execute(f"DROP TABLE IF EXISTS {table}")
    print(f"  restored from snapshots: {', '.join(loaded) if loaded else 'nothing (the warehouse had them)'}")
    started = time.perf_counter()
    result = run_pipeline(settings, selection=f"group:{group}")
    text, healthy = summarise(result)
    print(text)
    if not healthy or not_materialised(result):
        print(f"sidflow: stage {group} FAILED; no snapshots written")
        return 1
    with _connect(settings) as con:
        snapshots = write_snapshots(con, home_path / DATA_DIR, group)
    metrics_path = home_path / METRICS_DIR / f"{group}.json"
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(stage_metrics(result), indent=2, sort_keys=True) + "\n")
    plots = write_plots(result, home_path / PLOTS_DIR / group)
    print(f"sidflow: stage {group} succeeded in {time.perf_counter() - started:.1f} s: {len(snapshots)} table "
          f"snapshot(s), {metrics_path.name}, {len(plots)} plot(s)")
    return 0
