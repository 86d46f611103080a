"""LaM-SLidE's identifiers and autoencoder on a real LIGGGHTS frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bgnn_sim.models.lamslide.autoencoder import (
    Autoencoder,
    AutoencoderConfig,
    denormalise_positions,
    normalise_positions,
)
from bgnn_sim.models.lamslide.ids import FactorisedIds, identity_swap_rate
from tests.helpers import liggghts_hopper_run

TINY = AutoencoderConfig(width=64, latents=32, heads=4, encoder_blocks=1, frequencies=6)


@pytest.fixture(scope="module")
def frame():
    """The first frame of the LIGGGHTS hopper fixture: normalised positions, types, active."""
    run = liggghts_hopper_run()
    active = torch.from_numpy(run.active[0])
    positions = torch.from_numpy(run.positions[0]).float()
    live = positions[active]
    bounds = torch.stack([live.min(dim=0).values, live.max(dim=0).values])
    types = torch.from_numpy(run.types.astype(np.int64)) - 1
    return normalise_positions(positions, bounds), types, active, bounds


def test_factorised_ids_are_distinct_and_decode_exactly_for_20k_particles():
    ids = FactorisedIds(pool=32, factors=3, dim=96)
    codes = ids.draw(20_000, torch.Generator().manual_seed(3))
    assert ids.capacity == 32_768
    assert len(torch.unique(codes, dim=0)) == 20_000
    assert torch.equal(ids.decode(ids(codes)), codes)
    again = ids.draw(20_000, torch.Generator().manual_seed(4))
    assert not torch.equal(again, codes)  # a new draw per sample: ids carry no place
    with pytest.raises(ValueError, match="exceed"):
        ids.draw(40_000)
    with pytest.raises(ValueError, match="overlap"):
        FactorisedIds(pool=32, factors=3, dim=64)


def test_swap_rate_counts_exchanged_particles():
    truth = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert identity_swap_rate(truth + 0.1, truth) == 0.0
    assert identity_swap_rate(truth[[1, 0, 2, 3]], truth) == 0.5


def test_tiny_autoencoder_overfits_a_real_frame_without_swapping_identities(frame):
    torch.manual_seed(0)
    x, types, active, bounds = frame
    model = Autoencoder(TINY)
    codes = model.ids.draw(len(x), torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(300):
        decoded = model.decode(model.encode(x, types, codes, active), codes[active])
        loss = ((decoded.positions - x[active]) ** 2).sum(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        decoded = model.decode(model.encode(x, types, codes, active), codes[active])
    metres = denormalise_positions(decoded.positions, bounds)
    truth = denormalise_positions(x[active], bounds)
    error = (metres - truth).norm(dim=1)
    assert identity_swap_rate(metres, truth) == 0.0
    assert error.mean() < 0.1 * 0.004  # a tenth of a particle diameter


def test_inactive_particles_are_not_encoded_and_decoding_is_chunked(frame):
    torch.manual_seed(1)
    x, types, active, _ = frame
    active = active.clone()
    active[::3] = False  # particles gone through a sink
    model = Autoencoder(TINY).eval()
    codes = model.ids.draw(len(x), torch.Generator().manual_seed(1))
    moved = x.clone()
    moved[~active] += 0.5
    other_types = types.clone()
    other_types[~active] = 1 - other_types[~active]
    with torch.no_grad():
        latents = model.encode(x, types, codes, active)
        assert torch.equal(latents, model.encode(moved, other_types, codes, active))
        whole = model.decode(latents, codes[active])
        chunked = model.decode(latents, codes[active], chunk=7)
    assert whole.positions.shape == (int(active.sum()), 3)
    torch.testing.assert_close(chunked.positions, whole.positions)
    torch.testing.assert_close(chunked.exists, whole.exists)
