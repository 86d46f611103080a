"""Where torch runs: the device a user asked for, and the CPU threads it may use."""

from __future__ import annotations

import torch

from bgnn_sim.errors import BgnnError


def resolve_device(device: str) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; "cuda" without a GPU is a user error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BgnnError("--device cuda was asked for, but no CUDA GPU is available")
    return torch.device(device)


def use_threads(threads: int) -> None:
    """Run torch's CPU work on `threads` threads; 0 keeps torch's default (all cores)."""
    if threads > 0:
        torch.set_num_threads(threads)
