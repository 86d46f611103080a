"""Shipped models with their model cards: a BGNN per container kind (`<kind>.pt`, card
`<kind>.md`) and LaM-SLidE models where one was trained (`<kind>-lamslide.pt`, `.md`)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from bgnn_sim.errors import BgnnError

KINDS = ("hopper", "drum")
BACKENDS = ("bgnn", "lamslide")


def pretrained_model(kind: str, backend: str = "bgnn") -> Path:
    """Path of the shipped model of a backend ("bgnn" or "lamslide") for a container kind
    ("hopper" or "drum")."""
    if kind not in KINDS or backend not in BACKENDS:
        raise BgnnError(f"no pretrained {backend} model for a {kind!r}; expected a kind of "
                        f"{KINDS} and a backend of {BACKENDS}")  # fmt: skip
    name = kind if backend == "bgnn" else f"{kind}-{backend}"
    path = Path(str(resources.files(__package__) / f"{name}.pt"))
    if not path.is_file() and backend != "bgnn":
        raise BgnnError(f"no {backend} model is shipped for a {kind}; train one (bgnn train "
                        f"--backend {backend}) and pass it with --model")  # fmt: skip
    if not path.is_file():
        raise BgnnError(f"the pretrained {kind} model is missing from {path.parent}; reinstall")
    return path
