"""LaM-SLidE's identifiers and autoencoder on a real LIGGGHTS frame."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from bgnn_sim.engine.state import scene_from_trajectory, state_from_trajectory
from bgnn_sim.geometry.generators import HopperSpec, hopper
from bgnn_sim.geometry.mesh import save_mesh
from bgnn_sim.io.hdf5 import TrajectoryFile
from bgnn_sim.models.lamslide.autoencoder import Autoencoder, AutoencoderConfig
from bgnn_sim.models.lamslide.dynamics import (
    DynamicsConfig,
    LatentDynamics,
    flow_matching_loss,
    geometry_features,
    sample_future,
)
from bgnn_sim.models.lamslide.ids import FactorisedIds, identity_swap_rate
from bgnn_sim.training.lamslide import (
    AutoencoderTraining,
    DynamicsTraining,
    autoencoder_from,
    autoencoder_loss,
    export_dynamics,
    lamslide_from_checkpoint,
    train_autoencoder,
    train_dynamics,
)
from bgnn_sim.training.windows import WindowDataset
from tests.helpers import liggghts_hopper_run

TINY = AutoencoderConfig(width=64, latents=32, heads=4, encoder_blocks=1, frequencies=6)


@pytest.fixture(scope="module")
def frame():
    """Two frames 5 ms apart of the LIGGGHTS hopper fixture's discharge: positions (m) at the
    anchor frame and 5 frames later, types, which particles are in both, the scene box."""
    run = liggghts_hopper_run()
    anchors, positions = (torch.from_numpy(run.positions[k]) for k in (-6, -1))
    active = torch.from_numpy(run.active[-6] & run.active[-1])
    live = anchors[active].float()
    bounds = torch.stack([live.min(dim=0).values, live.max(dim=0).values])
    types = torch.from_numpy(run.types.astype(np.int64)) - 1
    return positions, anchors, types, active, bounds


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


@pytest.mark.slow
def test_tiny_autoencoder_overfits_a_real_frame_without_swapping_identities(frame):
    torch.manual_seed(0)
    x, anchors, types, active, bounds = frame
    assert ((x - anchors)[active].norm(dim=1) > 0.5 * 0.004).sum() > 20  # the particles flow
    model = Autoencoder(TINY)
    codes = model.ids.draw(len(x), torch.Generator().manual_seed(0))

    def decoded():
        latents = model.encode(x, anchors, types, codes, active, bounds)
        return model.decode(latents, anchors[active], codes[active], bounds).positions

    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(300):
        loss = (((decoded() - x[active]) / 0.004) ** 2).sum(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        positions = decoded()
    assert identity_swap_rate(positions, x[active]) == 0.0
    assert (positions - x[active]).norm(dim=1).mean() < 0.1 * 0.004  # a tenth of a diameter


def test_inactive_particles_are_not_encoded_and_decoding_is_chunked(frame):
    torch.manual_seed(1)
    x, anchors, types, active, bounds = frame
    active = active.clone()
    active[::3] = False  # particles gone through a sink
    model = Autoencoder(TINY).eval()
    codes = model.ids.draw(len(x), torch.Generator().manual_seed(1))
    moved, other_anchors, other_types = x.clone(), anchors.clone(), types.clone()
    moved[~active] += 0.05
    other_anchors[~active] -= 0.05
    other_types[~active] = 1 - other_types[~active]
    with torch.no_grad():
        latents = model.encode(x, anchors, types, codes, active, bounds)
        assert torch.equal(latents, model.encode(moved, other_anchors, other_types, codes,
                                                 active, bounds))  # fmt: skip
        whole = model.decode(latents, anchors[active], codes[active], bounds)
        chunked = model.decode(latents, anchors[active], codes[active], bounds, chunk=7)
    assert whole.positions.shape == (int(active.sum()), 3)
    torch.testing.assert_close(chunked.positions, whole.positions)
    torch.testing.assert_close(chunked.type_logits, whole.type_logits)


def latent_frames(frames: int = 24) -> torch.Tensor:
    """[T, L, D] latents of real LIGGGHTS frames (the discharge) from an untrained encoder."""
    torch.manual_seed(2)
    run = liggghts_hopper_run()
    positions = torch.from_numpy(run.positions)
    bounds = torch.stack([positions.reshape(-1, 3).min(0).values,
                          positions.reshape(-1, 3).max(0).values]).float()  # fmt: skip
    model = Autoencoder(TINY).eval()
    codes = model.ids.draw(run.n_particles, torch.Generator().manual_seed(2))
    types = torch.from_numpy(run.types.astype(np.int64)) - 1
    start = len(run.time) - frames
    anchors = positions[start]
    with torch.no_grad():
        return torch.stack([
            model.encode(positions[k], anchors, types, codes, torch.from_numpy(run.active[k]),
                         bounds)
            for k in range(start, len(run.time))
        ])  # fmt: skip


@pytest.mark.slow
def test_flow_matching_loss_decreases_and_sampling_is_seeded():
    latents = latent_frames()
    config = DynamicsConfig(width=TINY.width, heads=4, blocks=1, context=4, future=4,
                            wall_state=2, sampling_steps=4)  # fmt: skip
    model = LatentDynamics(config)
    walls = torch.zeros(8, 2)
    triangles = torch.tensor(
        [[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 0, 1], [1, 0, 1], [0, 1, 1]]]
    )
    geometry = geometry_features(triangles, torch.tensor([[0.0, 0, 0], [1, 1, 1]]))

    def windows():
        return [(latents[s : s + 4], latents[s + 4 : s + 8]) for s in range(0, 16, 2)]

    def held_out_loss() -> float:
        generator = torch.Generator().manual_seed(7)
        with torch.no_grad():
            return sum(float(flow_matching_loss(model, c, f, walls, geometry, generator))
                       for c, f in windows()) / len(windows())  # fmt: skip

    before = held_out_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(15):
        for context, future in windows():
            loss = flow_matching_loss(model, context, future, walls, geometry, generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert held_out_loss() < 0.5 * before

    context, future = windows()[0]
    draw = [sample_future(model.eval(), context, walls, geometry, future.shape,
                          torch.Generator().manual_seed(s)) for s in (5, 5, 6)]  # fmt: skip
    assert torch.equal(draw[0], draw[1])
    assert not torch.allclose(draw[0], draw[2])
    assert draw[0].shape == future.shape and torch.isfinite(draw[0]).all()


def test_autoencoder_stage_trains_on_a_dataset_and_resumes(tiny_dataset, tmp_path):
    settings = AutoencoderTraining(model=TINY, steps=40, lr=2e-3, checkpoint_every=20,
                                   stride=3, reach=4)  # fmt: skip
    windows = WindowDataset(tiny_dataset, "train", 5, stride=3)
    diameter = 2 * float(windows.manifest["material"]["radius"])

    def loss_of(model) -> float:
        """Mean loss over windows spread over the runs (the later ones in the discharge)."""
        generator = torch.Generator().manual_seed(9)
        picks = np.linspace(0, len(windows) - 1, 12).round().astype(int)
        with torch.no_grad():
            return float(np.mean([autoencoder_loss(model, windows[int(k)], 4.0, generator)[0]
                                  for k in picks]))  # fmt: skip

    torch.manual_seed(0)
    untrained = loss_of(Autoencoder(dataclasses.replace(TINY, displacement_unit=diameter)))
    figures = train_autoencoder(tiny_dataset, tmp_path / "ae", settings)
    assert set(figures) == {"error_diameters", "swap_rate", "moved_diameters"}
    model, stage1 = autoencoder_from(tmp_path / "ae" / "autoencoder.pt")
    assert stage1.steps == 40 and stage1.stride == 3 and stage1.reach == 4
    assert model.config.displacement_unit == diameter
    assert loss_of(model) < 0.8 * untrained  # an untrained decoder reads "no motion"

    longer = dataclasses.replace(settings, steps=50)
    steps = []
    train_autoencoder(tiny_dataset, tmp_path / "ae", longer, resume=True,
                      on_step=lambda step, loss: steps.append(step))  # fmt: skip
    assert steps == list(range(41, 51))


def test_train_command_runs_the_lamslide_autoencoder_stage(run_cli, tiny_dataset, tmp_path):
    config = tmp_path / "ae.toml"
    config.write_text("lr = 0.002\n[model]\nwidth = 32\nlatents = 8\nencoder_blocks = 1\n")
    out = tmp_path / "ae"
    args = ("train", tiny_dataset, "--out", out, "--backend", "lamslide", "--stage",
            "autoencoder", "--config", config, "--steps", "3")  # fmt: skip
    code, stdout, stderr = run_cli(*args)
    assert code == 0, stderr
    assert "test reconstruction error" in stdout and (out / "autoencoder.pt").is_file()
    code, _, stderr = run_cli(*args)
    assert code == 1 and "--resume" in stderr


def test_dynamics_stage_trains_on_latents_of_a_frozen_autoencoder(run_cli, tiny_dataset, tmp_path):
    (tmp_path / "ae.toml").write_text("[model]\nwidth = 32\nlatents = 8\nencoder_blocks = 1\n")
    (tmp_path / "dyn.toml").write_text(
        "[model]\nwidth = 32\nblocks = 1\ncontext = 3\nfuture = 3\nsampling_steps = 2\n"
    )
    common = ("--backend", "lamslide", "--steps", "2")
    assert run_cli("train", tiny_dataset, "--out", tmp_path / "ae", *common,
                   "--config", tmp_path / "ae.toml")[0] == 0  # fmt: skip
    args = ("train", tiny_dataset, "--out", tmp_path / "dyn", *common, "--stage", "dynamics",
            "--config", tmp_path / "dyn.toml")  # fmt: skip
    code, _, stderr = run_cli(*args)
    assert code == 1 and "--autoencoder" in stderr
    code, stdout, stderr = run_cli(*args, "--autoencoder", tmp_path / "ae" / "autoencoder.pt")
    assert code == 0, stderr
    assert "last flow-matching loss" in stdout
    payload = torch.load(tmp_path / "dyn" / "dynamics.pt", weights_only=True)
    assert payload["step"] == 2 and "autoencoder" in payload
    code, _, stderr = run_cli(*args, "--autoencoder", tmp_path / "dyn" / "dynamics.pt", "--force")
    assert code == 1 and "not a LaM-SLidE autoencoder checkpoint" in stderr
    (tmp_path / "far.toml").write_text("[model]\nwidth = 32\ncontext = 6\nfuture = 7\n")
    far = (
        "train",
        tiny_dataset,
        "--out",
        tmp_path / "far",
        *common,
        "--stage",
        "dynamics",
        "--config",
        tmp_path / "far.toml",
        "--autoencoder",
        tmp_path / "ae" / "autoencoder.pt",
    )
    code, _, stderr = run_cli(*far)  # fmt: skip
    assert code == 1 and "the autoencoder was trained to reach 11" in stderr


@pytest.fixture(scope="module")
def tiny_lamslide(tiny_dataset, tmp_path_factory):
    """dynamics.pt of a tiny LaM-SLidE trained on the tiny hopper dataset just enough for its
    decoded particles to stay near their places (seconds)."""
    out = tmp_path_factory.mktemp("tiny_lamslide")
    torch.manual_seed(0)
    model = AutoencoderConfig(width=32, latents=16, encoder_blocks=1, frequencies=6)
    stage1 = AutoencoderTraining(model=model, steps=300, lr=2e-3, stride=2, reach=6)
    train_autoencoder(tiny_dataset, out, stage1)
    latent = DynamicsConfig(width=32, blocks=1, context=3, future=4, sampling_steps=2)
    dynamics = DynamicsTraining(model=latent, steps=200, lr=1e-3)
    train_dynamics(tiny_dataset, out, out / "autoencoder.pt", dynamics)
    return out / "dynamics.pt"


def test_lamslide_backend_generates_seeded_windows_of_every_particle(tiny_lamslide, tiny_dataset):
    init = sorted((tiny_dataset / "trajectories").glob("*.h5"))[0]
    with TrajectoryFile(init) as source:
        scene = scene_from_trajectory(source, frame_dt=0.002)  # the model steps 2 frames
        state = state_from_trajectory(source, 10, 2, stride=2)
    windows = []
    for seed in (3, 3, 4):
        backend, _ = lamslide_from_checkpoint(tiny_lamslide, seed)
        assert backend.history == 2
        windows.append(backend.window(scene, state))
    assert windows[0].shape == (4, len(state.ids), 3) and torch.isfinite(windows[0]).all()
    assert torch.equal(windows[0], windows[1])
    assert not torch.equal(windows[0], windows[2])


@pytest.mark.slow
def test_compiled_dynamics_give_the_plain_windows(tiny_lamslide, tiny_dataset):
    """--compile on a LaM-SLidE model compiles its latent dynamics: the same window, to
    round-off (fused operations), for the same seed."""
    init = sorted((tiny_dataset / "trajectories").glob("*.h5"))[0]
    with TrajectoryFile(init) as source:
        scene = scene_from_trajectory(source, frame_dt=0.002)
        state = state_from_trajectory(source, 10, 2, stride=2)
    windows = []
    for compiled in (False, True):
        backend, _ = lamslide_from_checkpoint(tiny_lamslide, seed=3)
        if compiled:
            backend.compile()
        windows.append(backend.window(scene, state))
    torch.testing.assert_close(windows[1], windows[0], rtol=0, atol=1e-6)  # metres


def test_an_exported_model_rolls_out_the_same_without_its_optimiser(
    tiny_lamslide, tiny_dataset, tmp_path
):
    export_dynamics(tiny_lamslide, tmp_path / "shipped.pt")
    assert "optimizer" not in torch.load(tmp_path / "shipped.pt", weights_only=True)
    init = sorted((tiny_dataset / "trajectories").glob("*.h5"))[0]
    with TrajectoryFile(init) as source:
        scene = scene_from_trajectory(source, frame_dt=0.002)
        state = state_from_trajectory(source, 10, 2, stride=2)
    windows = [lamslide_from_checkpoint(path, seed=3)[0].window(scene, state)
               for path in (tiny_lamslide, tmp_path / "shipped.pt")]  # fmt: skip
    assert torch.equal(*windows)


def test_rollout_command_steps_a_lamslide_model_at_its_stride(run_cli, tiny_lamslide, tiny_dataset,
                                                             tmp_path):  # fmt: skip
    init = sorted((tiny_dataset / "trajectories").glob("*.h5"))[0]
    out = tmp_path / "rollout.h5"
    code, _, stderr = run_cli("rollout", tiny_lamslide, "--init", init, "--start", "30",
                              "--frames", "8", "-o", out)  # fmt: skip
    assert code == 0, stderr
    with TrajectoryFile(out) as rollout, TrajectoryFile(init) as source:
        assert rollout.n_frames == 2 + 8  # 2 frames of history (at the stride), then 8 new
        np.testing.assert_allclose(np.diff(rollout.time), 2e-3)  # the model's 2 ms frames
        history = rollout.read(0, 2).positions, source.read(28, 31, 2).positions
        np.testing.assert_allclose(*history, rtol=1e-6)
        assert len(rollout.guard_corrections) == 10  # the wall guard acts on every frame
    code, stdout, stderr = run_cli("rollout", tiny_lamslide, "--init", init, "--start", "30",
                                   "--frames", "8", "-o", tmp_path / "raw.h5",
                                   "--no-wall-guard")  # fmt: skip
    assert code == 0 and "(raw model)" in stdout, stderr
    with TrajectoryFile(tmp_path / "raw.h5") as raw:
        assert raw.guard_corrections is None
    code, _, stderr = run_cli("rollout", tiny_lamslide, "--init", init, "--start", "30",
                              "--frames", "8", "-o", tmp_path / "seed-1.h5", "--no-wall-guard",
                              "--seed", "1")  # fmt: skip
    assert code == 0, stderr
    with (
        TrajectoryFile(tmp_path / "raw.h5") as seed_0,
        TrajectoryFile(tmp_path / "seed-1.h5") as seed_1,
    ):
        np.testing.assert_array_equal(seed_0.read(0, 2).positions, seed_1.read(0, 2).positions)
        assert not np.allclose(seed_0.read(2).positions, seed_1.read(2).positions)  # another member
    code, _, stderr = run_cli("rollout", tiny_lamslide, "--init", init, "--frames", "8", "-o",
                              tmp_path / "bf16.h5", "--precision", "bfloat16")  # fmt: skip
    assert code == 1 and "applies to BGNN models" in stderr
    assert not (tmp_path / "bf16.h5").exists()


def test_simulate_runs_with_a_lamslide_model(run_cli, tiny_lamslide, tmp_path):
    mesh = tmp_path / "hopper.stl"
    save_mesh(hopper(HopperSpec(outlet=0.022, top=0.042, bin_height=0.01)), mesh)
    out = tmp_path / "run"
    code, _, stderr = run_cli("simulate", mesh, "--backend", "lamslide", "--model", tiny_lamslide,
                              "--particles", "60", "--duration", "0.01", "--out", out)  # fmt: skip
    assert code == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 5 and summary["particles"] == 60  # 2 ms frames

    args = ("simulate", mesh, "--model", tiny_lamslide, "--particles", "60", "--duration",
            "0.01", "--samples", "3", "--out", out, "--force")  # fmt: skip
    code, _, stderr = run_cli(*args)
    assert code == 0, stderr
    assert not (out / "trajectory.h5").exists()
    members = [traj.read().positions for traj in map(TrajectoryFile, sorted(out.glob("traj*")))]
    assert len(members) == 3 and not np.allclose(members[0][-1], members[1][-1])
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert metrics["samples"] == 3 and metrics["leakage_crossings_std"] >= 0


def test_samples_need_a_lamslide_model(run_cli, tiny_hopper_model, tmp_path):
    mesh = tmp_path / "hopper.stl"
    save_mesh(hopper(HopperSpec(outlet=0.022, top=0.042, bin_height=0.01)), mesh)
    code, _, stderr = run_cli("simulate", mesh, "--model", tiny_hopper_model, "--samples", "2",
                              "--out", tmp_path / "run")  # fmt: skip
    assert code == 1 and "--samples needs a LaM-SLidE model" in stderr
    code, _, stderr = run_cli("simulate", mesh, "--model", tiny_hopper_model, "--backend",
                              "lamslide", "--out", tmp_path / "run")  # fmt: skip
    assert code == 1 and "is a bgnn model" in stderr
    assert not (tmp_path / "run").exists()


def test_backend_lamslide_without_a_shipped_model_names_the_way_out(run_cli, tmp_path):
    mesh = tmp_path / "hopper.stl"
    save_mesh(hopper(HopperSpec(outlet=0.022, top=0.042, bin_height=0.01)), mesh)
    code, _, stderr = run_cli("simulate", mesh, "--backend", "lamslide", "--out", tmp_path / "r")
    assert code == 1 and "no lamslide model is shipped for a hopper" in stderr
    assert "--model" in stderr and not (tmp_path / "r").exists()
