"""Identifiers that scale to tens of thousands of particles.

LaM-SLidE gives each entity of a scene a frozen random vector from a pool at least as large as the
scene. Its systems have at most 32 entities; a granular scene has thousands. Here an identifier is
the sum of one vector from each of F small pools (`factors` digits in base `pool`), so P**F
particles get distinct identifiers from F * P stored vectors. All F * P vectors are orthonormal,
so a sum decodes back to its digits exactly (each digit is the argmax of one pool's dot products).
A scene draws distinct codes at random for every training sample, so that the model cannot tie
an identifier to a place.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class FactorisedIds(nn.Module):
    """Frozen identifier pools: codes [N, F] (digits) <-> identifier vectors [N, dim].

    Args:
        pool: vectors per pool (P).
        factors: pools summed per identifier (F); P**F identifiers in all.
        dim: identifier width; at least P * F so that all pool vectors are orthonormal.
        seed: draw of the pools (fixed: a checkpoint's identifiers must not change).
    """

    def __init__(self, pool: int = 32, factors: int = 3, dim: int = 96, seed: int = 0) -> None:
        super().__init__()
        if dim < pool * factors:
            raise ValueError(f"dim {dim} < pool * factors = {pool * factors}: ids would overlap")
        generator = torch.Generator().manual_seed(seed)
        basis, _ = torch.linalg.qr(torch.randn(dim, pool * factors, generator=generator))
        self.register_buffer("pools", basis.T.reshape(factors, pool, dim).contiguous())
        self.pool, self.factors = pool, factors

    @property
    def capacity(self) -> int:
        """How many particles can hold distinct identifiers."""
        return self.pool**self.factors

    def draw(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """[n, F] int64 distinct random codes for a scene of n particles."""
        if n > self.capacity:
            raise ValueError(f"{n} particles exceed the {self.capacity} identifiers")
        numbers = torch.randperm(self.capacity, generator=generator)[:n]
        return self._digits(numbers)

    def forward(self, codes: Tensor) -> Tensor:
        """[N, dim] identifier vectors of codes [N, F]."""
        factor = torch.arange(self.factors, device=codes.device)
        return self.pools[factor, codes].sum(dim=1)

    def decode(self, vectors: Tensor) -> Tensor:
        """[N, F] codes nearest to (noisy) identifier vectors [N, dim]."""
        return torch.einsum("nd,fpd->nfp", vectors, self.pools).argmax(dim=2)

    def _digits(self, numbers: Tensor) -> Tensor:
        powers = self.pool ** torch.arange(self.factors, device=numbers.device)
        return (numbers[:, None] // powers) % self.pool


def identity_swap_rate(decoded: Tensor, truth: Tensor) -> float:
    """Fraction of particles whose decoded position [N, 3] lies closer to another particle's
    true position [N, 3] than to their own: identities swapped by the decoder."""
    nearest = torch.cdist(decoded, truth).argmin(dim=1)
    return float((nearest != torch.arange(len(truth), device=truth.device)).float().mean())
