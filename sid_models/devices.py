"""Device choice shared by every training loop: CUDA when present, else CPU; mixed precision on CUDA only."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp not in ("bf16", "fp16", "off"):
        raise ValueError(f"amp must be 'bf16', 'fp16' or 'off', got {amp!r}")
    if device.type != "cuda" or amp == "off":
        return None
    return torch.bfloat16 if amp == "bf16" else torch.float16
