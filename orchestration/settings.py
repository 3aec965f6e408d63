"""Run settings: params.yaml (hyperparameters and rules), an optional run config (the user's source and
overrides) and environment variables, turned into configured resources.

Environment: SIDFLOW_HOME (default ./.sidflow), SIDFLOW_CONFIG (a run config file), SIDFLOW_PARAMS
(default: params.yaml of this repository), SIDFLOW_DATA_ROOT (default ../shared/data beside the repository),
SIDFLOW_DEVICE (auto | cpu | cuda[:N]).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pydantic
import yaml
from dagster._utils.schedules import is_valid_cron_string  # Dagster's own test for schedule strings
from dagster_duckdb import DuckDBResource

from assets.resources import (CatalogueSource, FeatureSettings, FileSource, RankingSettings, RefreshSettings,
                              RetrievalSettings, SASRecSettings, SidflowHome, SplitRules, SyntheticConfig,
                              TokenizerSettings)
from assets.tokenizers import BASELINE_KINDS, build_tokenizer
from data_checks.rules import QualityRules
from orchestration.alerts import AlertSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("home", "source", "synthetic", "quality", "splits", "warehouse", "features", "sasrec", "tokenizers",
            "ranking", "retrieval", "refresh", "schedules", "alerts")


class ScheduleSettings(pydantic.BaseModel, extra="forbid"):
    """`schedules` in params.yaml: cron expressions (UTC) of the daily refresh and the weekly full retrain."""

    daily_refresh: str = "0 3 * * *"
    weekly_retrain: str = "0 4 * * 0"

    @pydantic.field_validator("daily_refresh", "weekly_retrain")
    @classmethod
    def _cron(cls, value: str) -> str:
        if not is_valid_cron_string(value):
            raise ValueError("not a cron expression (minute hour day-of-month month day-of-week)")
        return value


class ConfigError(ValueError):
    """A run config or params file that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class RunSettings:
    home: SidflowHome
    source: CatalogueSource
    quality: QualityRules
    split_rules: SplitRules
    features: FeatureSettings
    sasrec: SASRecSettings
    tokenizers: TokenizerSettings
    ranking: RankingSettings
    retrieval: RetrievalSettings
    refresh: RefreshSettings
    schedules: ScheduleSettings
    alerts: AlertSettings
    duckdb_settings: dict

    def resources(self) -> dict:
        self.home.home_path.mkdir(parents=True, exist_ok=True)
        return {"home": self.home, "source": self.source, "quality": self.quality, "split_rules": self.split_rules,
                "features": self.features, "sasrec": self.sasrec, "tokenizers": self.tokenizers,
                "ranking": self.ranking, "retrieval": self.retrieval, "refresh": self.refresh,
                "warehouse": DuckDBResource(database=str(self.home.warehouse_path),
                                            connection_config=self.duckdb_settings)}


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: config file not found") from err
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections ({', '.join(SECTIONS)})")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    return data


def load_settings(config: str | Path | None = None, home: str | Path | None = None) -> RunSettings:
    """Merge params.yaml, the run config (sections replace params keys one by one) and the environment."""
    params_path = Path(_env("SIDFLOW_PARAMS") or REPO_ROOT / "params.yaml")
    params = read_yaml(params_path) if params_path.exists() else {}
    config = config or _env("SIDFLOW_CONFIG")
    run = read_yaml(Path(config).resolve()) if config else {}
    config_dir = Path(config).resolve().parent if config else Path.cwd()

    def section(name: str) -> dict:
        merged = dict(params.get(name) or {})
        merged.update(run.get(name) or {})
        return merged

    data_root = _env("SIDFLOW_DATA_ROOT") or str((REPO_ROOT.parent / "shared" / "data").resolve())
    # A home named on the command line or in the environment is relative to the working directory; one
    # named in a run config is relative to that file.
    explicit_home = home or _env("SIDFLOW_HOME")
    home_dir = _resolve_home(Path(explicit_home) if explicit_home else
                             config_dir / run["home"] if run.get("home") else Path(".sidflow"))
    source = dict(run.get("source") or {"kind": "synthetic"})
    quality = section("quality")
    if "timestamp_unit" in source:  # users describe their timestamps beside their files
        quality["timestamp_unit"] = source.pop("timestamp_unit")
    where = str(config or params_path)
    files = {kind: _file_source(source[kind], kind, config_dir, data_root, where)
             for kind in ("interactions", "items") if source.get(kind)}
    catalogue = _build(CatalogueSource, "source", where, kind=source.get("kind", "files" if files else "synthetic"),
                       synthetic=_build(SyntheticConfig, "synthetic", where, **section("synthetic")), **files)
    return RunSettings(
        home=SidflowHome(home=str(home_dir), data_root=data_root, device=_env("SIDFLOW_DEVICE") or "auto"),
        source=catalogue, quality=_build(QualityRules, "quality", where, **quality),
        split_rules=_build(SplitRules, "splits", where, **section("splits")),
        features=_features(section("features"), config_dir, data_root, where),
        sasrec=_build(SASRecSettings, "sasrec", where, **section("sasrec")),
        tokenizers=_tokenizers(section("tokenizers"), where),
        ranking=_checked(RankingSettings, "ranking", section("ranking"), where),
        retrieval=_checked(RetrievalSettings, "retrieval", section("retrieval"), where),
        refresh=_build(RefreshSettings, "refresh", where, **section("refresh")),
        schedules=_build(ScheduleSettings, "schedules", where, **section("schedules")),
        alerts=_build(AlertSettings, "alerts", where, **section("alerts")),
        duckdb_settings={k: str(v) for k, v in section("warehouse").items()})


def _tokenizers(section: dict, where: str) -> TokenizerSettings:
    """The tokenizer settings, each checked now by building its tokenizer, so a typo fails before any training."""
    settings = _build(TokenizerSettings, "tokenizers", where, **section)
    for kind in ("adc_sid", *BASELINE_KINDS):
        try:
            build_tokenizer(kind, settings.for_kind(kind))
        except ValueError as err:
            raise ConfigError(f"{where}: {err}") from None
    return settings


def _checked(cls, name: str, section: dict, where: str):
    """cls(**section), then its own problems(), each named `name.key`."""
    settings = _build(cls, name, where, **section)
    problems = settings.problems()
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(f"{name}.{problem}" for problem in problems))
    return settings


def _build(cls, name: str, where: str, **values):
    """cls(**values), with pydantic's errors turned into one line naming the file and key."""
    try:
        return cls(**values)
    except pydantic.ValidationError as err:
        problems = "; ".join(f"{name}.{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
                             for e in err.errors())
        raise ConfigError(f"{where}: {problems}") from err


def _resolve_home(value: Path) -> Path:
    path = value.expanduser().resolve()
    if path == Path(path.anchor) or path == Path.home():
        raise ConfigError(f"SIDFLOW_HOME {path} would put run outputs at the top of a file system or home folder")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"SIDFLOW_HOME {path} exists and is not a directory")
    return path


def _input_file(value, key: str, config_dir: Path, data_root: str, where: str) -> str:
    """An input path from a config: {data_root} expanded, relative to the config file, and existing."""
    path = Path(str(value).replace("{data_root}", data_root)).expanduser()
    path = (path if path.is_absolute() else config_dir / path).resolve()
    if not path.is_file():
        raise ConfigError(f"{where}: {key} {path} is not an existing file")
    return str(path)


def _features(section: dict, config_dir: Path, data_root: str, where: str) -> FeatureSettings:
    section = dict(section)
    for group, path_keys in (("vector_files", ("path", "ids")), ("attribute_files", ("path",))):
        specs = section.get(group) or []
        if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
            raise ConfigError(f"{where}: features.{group} must be a list of mappings")
        section[group] = [{**spec, **{k: _input_file(spec[k], f"features.{group}[{i}].{k}", config_dir, data_root,
                                                     where) for k in path_keys if spec.get(k)}}
                          for i, spec in enumerate(specs)]
    return _build(FeatureSettings, "features", where, **section)


def _file_source(spec, kind: str, config_dir: Path, data_root: str, where: str) -> FileSource:
    if isinstance(spec, str):
        spec = {"path": spec}
    if not isinstance(spec, dict) or "path" not in spec:
        raise ConfigError(f"{where}: source.{kind} needs a `path`")
    path = _input_file(spec["path"], f"source.{kind}.path", config_dir, data_root, where)
    columns = spec.get("columns") or {}
    if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
        raise ConfigError(f"{where}: source.{kind}.columns must map field names to column names")
    unknown = sorted(set(spec) - {"path", "format", "columns", "delimiter"})
    if unknown:
        raise ConfigError(f"{where}: source.{kind} has unknown key(s) {', '.join(unknown)}")
    source = _build(FileSource, f"source.{kind}", where, path=str(path), format=spec.get("format"), columns=columns,
                    delimiter=spec.get("delimiter"))
    try:
        source.resolved_format()
    except ValueError as err:
        raise ConfigError(f"{where}: source.{kind}: {err}") from err
    return source
