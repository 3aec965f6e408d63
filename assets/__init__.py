"""Software-defined assets, one module per stage (group)."""

from assets.ingest import raw_interactions, raw_items
from assets.validated import item_stats, splits, validated_interactions, validated_items

ALL_ASSETS = [raw_items, raw_interactions, validated_items, validated_interactions, item_stats, splits]
GROUPS = ("ingest", "validated")
