"""Blocking checks on the feature matrices: finite values, expected shape, a row for every catalogue item."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.feature_store import CONTENT_MANIFEST, catalogue_item_ids, features_dir, read_manifest, read_matrix
from assets.resources import SidflowHome
from data_checks.checks import WAREHOUSE_POOL
from data_checks.features import matrix_problems


def _check(warehouse: DuckDBResource, home: SidflowHome, expected: dict[str, dict]) -> dg.AssetCheckResult:
    directory = features_dir(home.home_path)
    with warehouse.get_connection() as con:
        catalogue = catalogue_item_ids(con)
    problems, shapes, fallback = [], {}, {}
    for name, info in expected.items():
        matrix = read_matrix(directory, name)
        problems += matrix_problems(name, matrix.item_ids, matrix.vectors, catalogue, info.get("dim"))
        shapes[name] = list(matrix.vectors.shape)
        fallback[name] = int(matrix.fallback.sum())
    return dg.AssetCheckResult(passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
                               description="; ".join(problems) or "finite, one row per catalogue item",
                               metadata={"shapes": dg.MetadataValue.json(shapes),
                                         "fallback_rows": dg.MetadataValue.json(fallback),
                                         "catalogue_items": len(catalogue)})


@dg.asset_check(asset="content_embeddings", blocking=True, pool=WAREHOUSE_POOL,
                description="Every content matrix: finite, its recorded shape, one row per catalogue item.")
def content_embeddings_valid(warehouse: DuckDBResource, home: SidflowHome) -> dg.AssetCheckResult:
    return _check(warehouse, home, read_manifest(features_dir(home.home_path), CONTENT_MANIFEST))


@dg.asset_check(asset="behavior_embeddings", blocking=True, pool=WAREHOUSE_POOL,
                description="The behavior matrix: finite, one row per catalogue item (fallback rows counted).")
def behavior_embeddings_valid(warehouse: DuckDBResource, home: SidflowHome) -> dg.AssetCheckResult:
    return _check(warehouse, home, {"behavior": {}})


FEATURE_CHECKS = [content_embeddings_valid, behavior_embeddings_valid]
