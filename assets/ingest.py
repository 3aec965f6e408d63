"""Group `ingest`: land the configured source as it arrived (every field as text) into raw tables."""


import dagster as dg
from dagster_duckdb import DuckDBResource

from assets.sources import landing
from assets.resources import CatalogueSource
from assets.warehouse import preview, record_load
from data_checks.checks import WAREHOUSE_POOL
from data_checks.sql import scalar


def _land(context: dg.AssetExecutionContext, warehouse: DuckDBResource, source: CatalogueSource,
          kind: str) -> dg.MaterializeResult:
    context.log.info(f"landing {kind} from {source.describe()}")
    with warehouse.get_connection() as con:
        try:
            table, rows, batch = landing.land(con, source, kind)
        except landing.SourceError as err:
            raise dg.Failure(description=str(err), allow_retries=False) from err
        record_load(con, table, batch, rows)
        unreadable = scalar(con, f"SELECT count(*) FROM {table} WHERE parse_error IS NOT NULL")
        return dg.MaterializeResult(metadata={
            "dagster/row_count": rows,
            "load_batch": batch,
            "source": source.describe(),
            "unreadable_records": unreadable,
            "preview": preview(con, table, "source_file, source_row"),
        })


@dg.asset(group_name="ingest", pool=WAREHOUSE_POOL, kinds={"duckdb"})
def raw_items(context: dg.AssetExecutionContext, warehouse: DuckDBResource,
              source: CatalogueSource) -> dg.MaterializeResult:
    """The item catalogue as landed: item_id, title, categories, brand, description (text), with lineage
    (load_batch, source_file, source_row) and the parse error of unreadable records."""
    return _land(context, warehouse, source, "items")


@dg.asset(group_name="ingest", pool=WAREHOUSE_POOL, kinds={"duckdb"})
def raw_interactions(context: dg.AssetExecutionContext, warehouse: DuckDBResource,
                     source: CatalogueSource) -> dg.MaterializeResult:
    """Interaction events as landed: user_id, item_id, timestamp, rating, event_order (text), with lineage
    and the parse error of unreadable records."""
    return _land(context, warehouse, source, "interactions")
