"""Resources the assets ask for. The classes live here, beside the assets that use them, so imports keep
pointing one way (orchestration builds and configures them; assets only receive them)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, get_type_hints

import dagster as dg
import pydantic

from assets.sources.synthetic import SyntheticParams

#: Canonical fields of the two landed tables. Raw tables keep every field as text, as it arrived.
INTERACTION_FIELDS = ("user_id", "item_id", "timestamp", "rating", "event_order")
ITEM_FIELDS = ("item_id", "title", "categories", "brand", "description")
REQUIRED_FIELDS = {"interactions": ("user_id", "item_id", "timestamp"), "items": ("item_id",)}
FILE_FORMATS = ("csv", "tsv", "parquet", "jsonl", "amazon_reviews", "amazon_meta")


class SidflowHome(dg.ConfigurableResource):
    """Where a run writes (`home`: the DuckDB warehouse and `artifacts/`), where benchmark data is read
    from (`data_root`), and which torch device training uses (`device`: auto | cpu | cuda[:N])."""

    home: str = ".sidflow"
    data_root: str = "../shared/data"
    device: str = "auto"

    @property
    def home_path(self) -> Path:
        return Path(self.home).expanduser().resolve()

    @property
    def warehouse_path(self) -> Path:
        return self.home_path / "warehouse.duckdb"


# The synthetic catalogue's parameters, as Dagster config: built from SyntheticParams' own fields and
# defaults so the two can never drift apart.
SyntheticConfig = pydantic.create_model(
    "SyntheticConfig", __base__=dg.Config, __doc__="Size and shape of the built-in synthetic catalogue.",
    **{f.name: (hint, f.default) for f, hint in ((f, get_type_hints(SyntheticParams)[f.name])
                                                for f in dataclasses.fields(SyntheticParams))})


class FileSource(dg.Config):
    """One input file. `columns` maps sidflow's field names to the file's column (or JSON key) names;
    fields left out take the same name when the file has such a column."""

    path: str
    format: Optional[str] = None  # csv | tsv | parquet | jsonl | amazon_reviews | amazon_meta; from the name if unset
    columns: dict[str, str] = {}
    delimiter: Optional[str] = None  # csv only; DuckDB sniffs it when unset

    def resolved_format(self) -> str:
        if self.format:
            if self.format not in FILE_FORMATS:
                raise ValueError(f"{self.path}: format {self.format!r} is not one of {', '.join(FILE_FORMATS)}")
            return self.format
        name = self.path.lower().removesuffix(".gz")
        for suffix, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".parquet", "parquet"), (".jsonl", "jsonl"),
                            (".ndjson", "jsonl"), (".json", "jsonl")):
            if name.endswith(suffix):
                return fmt
        raise ValueError(f"{self.path}: cannot tell the file format from its name; set `format` "
                         f"to one of {', '.join(FILE_FORMATS)}")


class CatalogueSource(dg.ConfigurableResource):
    """What to ingest: the synthetic catalogue (`kind: synthetic`) or the user's files (`kind: files`)."""

    kind: str = "synthetic"
    synthetic: SyntheticConfig = SyntheticConfig()
    interactions: Optional[FileSource] = None
    items: Optional[FileSource] = None

    def describe(self) -> str:
        if self.kind == "synthetic":
            s = self.synthetic
            return f"synthetic(users={s.users}, items={s.items}, events={s.events}, seed={s.seed})"
        return f"files(interactions={self.interactions.path}, items={self.items.path})"


class SplitRules(dg.ConfigurableResource):
    """Evaluation splits: leave-one-out needs `min_user_events` per user; the chronological split puts the
    earliest `chrono_train_fraction` of events in train."""

    min_user_events: int = 3
    chrono_train_fraction: float = 0.9
