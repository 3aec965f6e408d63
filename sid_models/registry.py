"""Every tokenizer by its `kind`: build one from plain settings (params.yaml sections), load one from a checkpoint."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path

from sid_models.adc_sid import ADCSIDConfig
from sid_models.opq import OPQConfig, OPQTokenizer
from sid_models.rqkmeans import RQKMeansConfig, RQKMeansTokenizer
from sid_models.rqvae import RQVAEConfig, RQVAETokenizer
from sid_models.tokenizer import Tokenizer, read_checkpoint
from sid_models.train_adc_sid import ADCSIDTokenizer, ADCSIDTrainConfig

TOKENIZERS: dict[str, type[Tokenizer]] = {cls.kind: cls for cls in
                                          (ADCSIDTokenizer, RQVAETokenizer, RQKMeansTokenizer, OPQTokenizer)}


def _dataclass(cls: type, values: Mapping | None, where: str):
    """cls(**values) with an error that names the setting when a key is unknown or a value is rejected."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{where}: unknown settings {unknown}; known: {sorted(known)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None


def _adc_sid(settings: Mapping, device: str | None) -> Tokenizer:
    train = dict(settings.get("train") or {})
    if device is not None:
        train["device"] = device
    return ADCSIDTokenizer(_dataclass(ADCSIDConfig, settings.get("model"), "tokenizers.adc_sid.model"),
                           _dataclass(ADCSIDTrainConfig, train, "tokenizers.adc_sid.train"))


def _flat(cls: type[Tokenizer], config_class: type) -> Callable[[Mapping, str | None], Tokenizer]:
    def build(settings: Mapping, device: str | None) -> Tokenizer:
        values = dict(settings)
        if device is not None and "device" in {f.name for f in dataclasses.fields(config_class)}:
            values["device"] = device
        return cls(_dataclass(config_class, values, f"tokenizers.{cls.kind}"))
    return build


BUILDERS: dict[str, Callable[[Mapping, str | None], Tokenizer]] = {
    "adc_sid": _adc_sid,
    "rqvae": _flat(RQVAETokenizer, RQVAEConfig),
    "rqkmeans": _flat(RQKMeansTokenizer, RQKMeansConfig),
    "opq": _flat(OPQTokenizer, OPQConfig),
}


def build_tokenizer(kind: str, settings: Mapping | None = None, device: str | None = None) -> Tokenizer:
    """An unfitted tokenizer of `kind` from its settings (ADC-SID: {"model": ..., "train": ...}; the baselines:
    their config fields); `device` ("auto", "cpu", "cuda") overrides the training device."""
    if kind not in BUILDERS:
        raise ValueError(f"unknown tokenizer kind {kind!r}; known: {sorted(BUILDERS)}")
    return BUILDERS[kind](settings or {}, device)


def load_tokenizer(path: Path) -> Tokenizer:
    kind, state = read_checkpoint(path)
    if kind not in TOKENIZERS:
        raise ValueError(f"{path}: tokenizer kind {kind!r} is not one of {sorted(TOKENIZERS)}")
    return TOKENIZERS[kind].from_state(state)
