"""Blocking checks on the SID tables: unique SIDs, every item covered, finite importance weights, and the
stored SIDs equal a fresh encode with the same checkpoint."""

import dagster as dg
import numpy as np
from dagster_duckdb import DuckDBResource

from assets.resources import SidflowHome
from assets.tokenizers import BASELINE_KINDS, catalogue_features, load_current
from data_checks.checks import WAREHOUSE_POOL
from data_checks.sids import importance_problems, lookup_problems
from sid_models.tokenizer import BEHAVIOR


def _result(problems: list[str], metadata: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
                               description="; ".join(problems) or "holds", metadata=metadata)


def _reencode_problems(con, home, item_ids: list[str], features: dict, table: str, kind: str,
                       tokenizer_filter: bool) -> tuple[list, str]:
    version, tokenizer = load_current(home, kind)
    where = "tokenizer_version = ?" + (" AND tokenizer = ?" if tokenizer_filter else "")
    params = [version] + ([kind] if tokenizer_filter else [])
    stored = con.execute(f"SELECT item_id, sid FROM {table} WHERE {where} AND origin = 'trained' ORDER BY item_id",
                         params).fetchall()
    problems = lookup_problems(con, table, version, len(item_ids), kind if tokenizer_filter else None)
    if [i for i, _ in stored] == item_ids:
        changed = int((np.array([s for _, s in stored]) != tokenizer.encode(features)).any(axis=1).sum())
        if changed:
            problems.append(f"{table} {version}: re-encoding with the checkpoint changes {changed} SIDs")
    return problems, version


@dg.asset_check(asset="sid_lookup", blocking=True, pool=WAREHOUSE_POOL,
                description="Every item has one SID, SIDs are unique within the version, re-encoding agrees.")
def sid_lookup_valid(warehouse: DuckDBResource, home: SidflowHome) -> dg.AssetCheckResult:
    item_ids, features, _ = catalogue_features(warehouse, home)
    with warehouse.get_connection() as con:
        problems, version = _reencode_problems(con, home, item_ids, features, "sid_lookup", "adc_sid", False)
    return _result(problems, {"tokenizer_version": version})


@dg.asset_check(asset="baseline_sid_lookup", blocking=True, pool=WAREHOUSE_POOL,
                description="The same rules for every baseline tokenizer's SIDs.")
def baseline_sid_lookup_valid(warehouse: DuckDBResource, home: SidflowHome) -> dg.AssetCheckResult:
    problems, versions = [], {}
    item_ids, features, _ = catalogue_features(warehouse, home)  # read once for every baseline
    with warehouse.get_connection() as con:
        for kind in BASELINE_KINDS:
            found, versions[kind] = _reencode_problems(con, home, item_ids, features, "baseline_sid_lookup", kind,
                                                       True)
            problems += found
    return _result(problems, {"tokenizer_versions": dg.MetadataValue.json(versions)})


@dg.asset_check(asset="sid_importance", blocking=True, pool=WAREHOUSE_POOL,
                description="Importance weights finite and >= 0, one per item and behavioral token.")
def sid_importance_valid(warehouse: DuckDBResource, home: SidflowHome) -> dg.AssetCheckResult:
    version, tokenizer = load_current(home, "adc_sid")
    behavioral = tokenizer.config.experts_of(BEHAVIOR)
    with warehouse.get_connection() as con:
        # The catalogue plus the items a refresh added to this version.
        items = con.execute("""SELECT count(*) FROM (SELECT item_id FROM items UNION SELECT item_id FROM sid_lookup
                               WHERE tokenizer_version = ? AND origin = 'incremental')""", [version]).fetchall()[0][0]
        problems = importance_problems(con, version, items, behavioral)
    return _result(problems, {"tokenizer_version": version})


SID_CHECKS = [sid_lookup_valid, baseline_sid_lookup_valid, sid_importance_valid]
