"""Resources the assets ask for. The classes live here, beside the assets that use them, so imports keep
pointing one way (orchestration builds and configures them; assets only receive them)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional, get_type_hints

import dagster as dg
import pydantic

from assets.feature_files import AttributeFile, VectorFile
from assets.sources.synthetic import SyntheticParams
from sid_models.ranking import RankerConfig
from sid_models.retriever import RetrieverConfig
from sid_models.sasrec import SASRecConfig
from sid_models.text_encoder import DEFAULT_MODEL as DEFAULT_TEXT_MODEL
from sid_models.text_encoder import DEFAULT_TEMPLATE
from sid_models.train_ranking import RankerTrainConfig
from sid_models.train_retriever import RetrieverTrainConfig
from sid_models.train_sasrec import TrainConfig

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


def config_from_dataclass(cls: type, name: str, doc: str, exclude: tuple[str, ...] = ()) -> type[dg.Config]:
    """Dagster config built from a dataclass's own fields and defaults, so the two can never drift apart."""
    hints = get_type_hints(cls)
    def default(f: dataclasses.Field):
        return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default

    return pydantic.create_model(name, __base__=dg.Config, __doc__=doc, **{
        f.name: (hints[f.name], default(f)) for f in dataclasses.fields(cls) if f.name not in exclude})


SyntheticConfig = config_from_dataclass(SyntheticParams, "SyntheticConfig",
                                        "Size and shape of the built-in synthetic catalogue.")


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


class TextFeatures(dg.Config):
    """The text modality of file sources: each item's text from `template` (parts over the item fields; a
    part whose fields are all empty is left out; kept parts are joined with ". "), embedded by `model` (a
    sentence-transformers directory or Hugging Face name). The synthetic catalogue supplies its own vectors."""

    enabled: bool = True
    model: str = DEFAULT_TEXT_MODEL
    template: list[str] = list(DEFAULT_TEMPLATE)
    batch_size: int = 128


class FeatureSettings(dg.ConfigurableResource):
    """Content modalities: the item text, precomputed vector files, categorical attribute files."""

    text: TextFeatures = TextFeatures()
    vector_files: list[VectorFile] = []
    attribute_files: list[AttributeFile] = []


# SASRec's settings: the model and training dataclasses of sid_models as config. The catalogue size comes
# from the data and the device from SidflowHome.
SASRecModelConfig = config_from_dataclass(SASRecConfig, "SASRecModelConfig", "SASRec architecture and loss.",
                                          exclude=("n_items",))
SASRecTrainConfig = config_from_dataclass(TrainConfig, "SASRecTrainConfig", "SASRec training loop.",
                                          exclude=("device",))


class SASRecSettings(dg.ConfigurableResource):
    """SASRec for `sasrec_model`; `resume` continues from the last checkpoint of the previous run."""

    model: SASRecModelConfig = SASRecModelConfig()
    train: SASRecTrainConfig = SASRecTrainConfig()
    resume: bool = False

    def configs(self, n_items: int, device: str) -> tuple[SASRecConfig, TrainConfig]:
        return (SASRecConfig(n_items=n_items, **self.model.model_dump()),
                TrainConfig(device=device, **self.train.model_dump()))


class TokenizerSettings(dg.ConfigurableResource):
    """Settings of each tokenizer by kind (`tokenizers` in params.yaml): ADC-SID as {model: ADCSIDConfig fields,
    train: ADCSIDTrainConfig fields}, the baselines as their config fields (sid_models/{rqvae,rqkmeans,opq}.py).
    `baselines` names the baseline tokenizers that are fitted beside ADC-SID."""

    adc_sid: dict[str, Any] = {}
    rqvae: dict[str, Any] = {}
    rqkmeans: dict[str, Any] = {}
    opq: dict[str, Any] = {}

    def for_kind(self, kind: str) -> dict:
        return dict(getattr(self, kind))


RankerModelConfig = config_from_dataclass(RankerConfig, "RankerModelConfig", "PPNet ranker architecture.",
                                          exclude=("n_users", "n_items", "codebook_sizes", "features"))
RankerTrainSettings = config_from_dataclass(RankerTrainConfig, "RankerTrainSettings", "Ranker training loop.",
                                            exclude=("device",))
RANKING_FEATURE_SETS = ("adc_sid", "rqvae", "rqkmeans", "opq", "item_id")


class RankingSettings(dg.ConfigurableResource):
    """The ranking model (`ranking` in params.yaml). `feature_set`: whose SID tokens the ranker reads (adc_sid,
    rqvae, rqkmeans, opq) or `item_id` for an item-ID ranker; `hybrid` adds the item-id embedding to SID
    tokens; `importance_weights` false sets every ADC-SID token's weight to 1 (the ablation). Labels: observed interactions of the chronological split are positives, `negatives_per_positive`
    sampled items (`negatives`: uniform | popularity) are negatives; the last `valid_fraction` of the train
    positives by time (with their negatives) select the epoch."""

    feature_set: str = "adc_sid"
    hybrid: bool = False
    importance_weights: bool = True
    negatives: str = "popularity"
    negatives_per_positive: int = 4
    valid_fraction: float = 0.1
    seed: int = 0
    model: RankerModelConfig = RankerModelConfig()
    train: RankerTrainSettings = RankerTrainSettings()

    def problems(self) -> list[str]:
        found = []
        if self.feature_set not in RANKING_FEATURE_SETS:
            found.append(f"feature_set must be one of {RANKING_FEATURE_SETS}, got {self.feature_set!r}")
        if self.negatives not in ("uniform", "popularity"):
            found.append(f"negatives must be uniform or popularity, got {self.negatives!r}")
        if self.negatives_per_positive < 1:
            found.append(f"negatives_per_positive must be >= 1, got {self.negatives_per_positive}")
        if not 0.0 < self.valid_fraction < 1.0:
            found.append(f"valid_fraction must be in (0, 1), got {self.valid_fraction}")
        return found

    @property
    def ranker_features(self) -> str:
        """RankerConfig.features: sid, item_id or hybrid."""
        return "item_id" if self.feature_set == "item_id" else "hybrid" if self.hybrid else "sid"


RetrieverModelSettings = config_from_dataclass(RetrieverConfig, "RetrieverModelSettings",
                                               "Generative retriever architecture.", exclude=("codebook_sizes",))
RetrieverTrainSettings = config_from_dataclass(RetrieverTrainConfig, "RetrieverTrainSettings",
                                               "Generative retriever training loop.", exclude=("device",))
RETRIEVAL_TOKENIZERS = ("adc_sid", "rqvae", "rqkmeans", "opq")


class RetrievalSettings(dg.ConfigurableResource):
    """The generative retriever (`retrieval` in params.yaml): one retriever per tokenizer in `tokenizers`
    (the first is the one the asset reports on; all of them go into the comparison report), trained on the
    leave-one-out train split. `importance_weights` weights ADC-SID's behavioral levels in the loss by
    sid_importance (false: every level 1), each level's weights rescaled to mean 1 and kept above
    `importance_floor` (weight = floor + (1 - floor) * R / mean R). `behavior_first` generates ADC-SID's
    behavioral tokens before its shared and content ones (false, the default: the table's order). `eval_beam` is
    the beam of the test decoding (the longest list scored, so at least the largest K of 100)."""

    tokenizers: list[str] = list(RETRIEVAL_TOKENIZERS)
    importance_weights: bool = True
    importance_floor: float = 0.5
    behavior_first: bool = False
    eval_beam: int = 100
    model: RetrieverModelSettings = RetrieverModelSettings()
    train: RetrieverTrainSettings = RetrieverTrainSettings()

    def problems(self) -> list[str]:
        found = []
        unknown = [name for name in self.tokenizers if name not in RETRIEVAL_TOKENIZERS]
        if unknown or not self.tokenizers or len(set(self.tokenizers)) != len(self.tokenizers):
            found.append(f"tokenizers must be distinct names from {RETRIEVAL_TOKENIZERS}, got {self.tokenizers}")
        if self.eval_beam < 1:
            found.append(f"eval_beam must be >= 1, got {self.eval_beam}")
        if not 0.0 <= self.importance_floor <= 1.0:
            found.append(f"importance_floor must be in [0, 1], got {self.importance_floor}")
        try:
            RetrieverTrainConfig(**self.train.model_dump())
        except ValueError as error:
            found.append(f"train: {error}")
        return found


class RefreshSettings(dg.ConfigurableResource):
    """Incremental SID refresh (`refresh` in params.yaml): item files land in `landing_dir` (default
    `$SIDFLOW_HOME/landing/items`; a relative path is relative to SIDFLOW_HOME), one file per arriving batch."""

    landing_dir: Optional[str] = None

    def landing_path(self, home: SidflowHome) -> Path:
        if not self.landing_dir:
            return home.home_path / "landing" / "items"
        path = Path(self.landing_dir).expanduser()
        return (path if path.is_absolute() else home.home_path / path).resolve()
