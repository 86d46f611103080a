"""Shipped BGNN models, one per container kind, each with a model card (`<kind>.md`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from bgnn_sim.errors import BgnnError

KINDS = ("hopper", "drum")


def pretrained_model(kind: str) -> Path:
    """Path of the shipped model for a container kind ("hopper" or "drum")."""
    if kind not in KINDS:
        raise BgnnError(f"no pretrained model for a {kind!r}; expected one of {KINDS}")
    path = Path(str(resources.files(__package__) / f"{kind}.pt"))
    if not path.is_file():
        raise BgnnError(f"the pretrained {kind} model is missing from {path.parent}; reinstall")
    return path
