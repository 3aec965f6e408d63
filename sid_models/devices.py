"""Device choice shared by every training loop: CUDA when present, else CPU; mixed precision on CUDA, and bf16 on
the CPU for the loops that ask for it."""

from __future__ import annotations

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(amp: str, device: torch.device, cpu: bool = False) -> torch.dtype | None:
    """The autocast dtype of `amp` on `device`, None for fp32. On the CPU only with `cpu=True` and only bf16
    (oneDNN runs bf16 matmuls natively on AVX-512-BF16 and AMX processors; elsewhere they are emulated and slower)."""
    if amp not in ("bf16", "fp16", "off"):
        raise ValueError(f"amp must be 'bf16', 'fp16' or 'off', got {amp!r}")
    if amp == "off" or (device.type != "cuda" and not cpu):
        return None
    if device.type != "cuda" and amp == "fp16":
        raise ValueError("amp 'fp16' needs CUDA; the CPU autocasts to 'bf16' only")
    return torch.bfloat16 if amp == "bf16" else torch.float16
