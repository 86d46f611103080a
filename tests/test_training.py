"""Training on a tiny real LIGGGHTS dataset: overfitting, exact resume, DDP, checkpoints."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from bgnn_sim.dem.dataset import read_manifest
from bgnn_sim.errors import ConfigError
from bgnn_sim.io.hdf5 import TrajectoryFile
from bgnn_sim.models.bgnn import BGNNConfig
from bgnn_sim.models.loading import load_model
from bgnn_sim.training import distributed
from bgnn_sim.training.checkpoint import CheckpointError, load_checkpoint
from bgnn_sim.training.config import TrainConfig
from bgnn_sim.training.distributed import Context
from bgnn_sim.training.noise import noisy_history
from bgnn_sim.training.trainer import CHECKPOINT, Trainer, step_generator
from tests.helpers import TINY


def test_tiny_model_overfits_real_windows(tiny_dataset, tmp_path):
    config = TrainConfig(
        model=BGNNConfig(latent=64, message_passing=2), steps=200, lr=3e-3, lr_final=3e-4,
        noise_std=0.0, windows_per_step=1, validate_every=10**6, validation_rollout=0,
        validation_windows=1, checkpoint_every=10**6, log_every=10**6, graph_backend="kdtree",
    )  # fmt: skip
    trainer = Trainer(tiny_dataset, tmp_path / "run", config, Context())
    # One real window of the discharge (~200 particles, their walls): DEM accelerations are
    # chaotic, so a tiny model can memorise one frame in seconds, not learn a whole run.
    middle = len(trainer.train_set.index) // 2
    trainer.train_set.index = trainer.train_set.index[middle : middle + 1]
    trainer.window_weights = trainer.window_weights[middle : middle + 1]
    losses = []
    trainer.fit(lambda step, loss: losses.append(loss))
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first / 10, (first, last)


@pytest.mark.parametrize("ema_decay", [None, 0.5])
def test_resume_gives_the_same_parameters(tiny_dataset, tmp_path, ema_decay):
    config = dataclasses.replace(TINY, ema_decay=ema_decay)
    straight = Trainer(tiny_dataset, tmp_path / "straight", config, Context()).fit()

    class Killed(Exception):
        pass

    def kill_after_checkpoint(step, loss):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        Trainer(tiny_dataset, tmp_path / "killed", config, Context()).fit(kill_after_checkpoint)
    resumed = Trainer(tiny_dataset, tmp_path / "killed", config, Context())
    resumed.resume()
    assert resumed.step == 3
    final = resumed.fit()
    for name, value in straight.model.items():
        torch.testing.assert_close(final.model[name], value, rtol=0, atol=0, msg=name)
    # The metrics log continues where the checkpoint was: same rows, seconds aside.
    logs = [
        (tmp_path / run / "metrics.csv").read_text().splitlines() for run in ("straight", "killed")
    ]
    strip = [[row.rsplit(",", 1)[0] for row in log] for log in logs]
    assert strip[0] == strip[1] and len(strip[0]) == TINY.steps + 1


def test_the_moving_average_is_validated_and_shipped(tiny_dataset, tmp_path):
    trainer = Trainer(tiny_dataset, tmp_path / "run", dataclasses.replace(TINY, ema_decay=0.5),
                      Context())  # fmt: skip
    trained = []  # the raw weights after each step

    def keep_weights(step, loss):
        trained.append({name: w.clone() for name, w in trainer.model.state_dict().items()})

    shipped = trainer.fit(keep_weights)
    average = trained[0]  # the first update copies the weights, the next ones blend them
    for weights in trained[1:]:
        average = {name: 0.5 * average[name] + 0.5 * w for name, w in weights.items()}
    saved = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    for name, value in average.items():
        torch.testing.assert_close(shipped.model[name], value, msg=name)
        # Training goes on from the raw weights: the checkpoint keeps them beside the average.
        torch.testing.assert_close(saved.model[name], trained[-1][name], rtol=0, atol=0)
    assert not torch.equal(shipped.model[name], saved.model[name])
    assert saved.average is not None
    assert load_checkpoint(tmp_path / "run" / "model.pt").average is None


def test_fine_tuning_starts_from_the_given_weights(tiny_dataset, tmp_path):
    trained = Trainer(tiny_dataset, tmp_path / "trained", TINY, Context()).fit()
    tuned = Trainer(tiny_dataset, tmp_path / "tuned", TINY, Context())
    tuned.start_from(tmp_path / "trained" / "model.pt")
    assert tuned.step == 0  # its own schedule, from the start
    for name, value in trained.model.items():
        torch.testing.assert_close(tuned.model.state_dict()[name], value, rtol=0, atol=0)
    tuned.fit()  # validates the starting model first, so best.pt is never worse than it
    assert (tmp_path / "tuned" / "metrics.csv").read_text().splitlines()[1].startswith("0,")
    wider = dataclasses.replace(TINY, model=dataclasses.replace(TINY.model, latent=32))
    other = Trainer(tiny_dataset, tmp_path / "other", wider, Context())
    with pytest.raises(ConfigError, match="another shape"):
        other.start_from(tmp_path / "trained" / "model.pt")


def test_a_strided_model_steps_several_recorded_frames(run_cli, tiny_drum_dataset, tmp_path):
    """stride 2: the model's frame is two recorded frames, in its checkpoint, its statistics,
    its windows and its validation rollouts (through the drum's start), and a rollout steps it."""
    strided = dataclasses.replace(TINY, stride=2, graph_backend="kdtree")
    trainer = Trainer(tiny_drum_dataset, tmp_path / "run", strided, Context())
    trainer.fit()
    manifest = read_manifest(tiny_drum_dataset)
    recorded_dt = 1e-3
    assert trainer.frame_dt == pytest.approx(2 * recorded_dt)
    window = trainer.train_set[0]
    assert torch.allclose(window.time.diff(), torch.tensor(2 * recorded_dt, dtype=torch.float64))
    # The statistics of a stride-2 step are those of the recorded runs taken every other frame,
    # from either offset.
    velocities = []
    for run in (r for r in manifest["runs"] if r["split"] == "train"):
        with TrajectoryFile(tiny_drum_dataset / run["file"]) as traj:
            frames = traj.read()
        for offset in (0, 1):
            x, active = frames.positions[offset::2], frames.active[offset::2]
            velocities.append((x[1:] - x[:-1])[active[1:] & active[:-1]])
    velocity = np.concatenate(velocities)
    assert np.allclose(trainer.statistics["velocity"]["std"], velocity.std(axis=0))
    assert np.allclose(trainer.statistics["edge"]["std"], manifest["statistics"]["edge"]["std"])
    metrics = [row for row in csv.DictReader((tmp_path / "run" / "metrics.csv").open())]
    assert math.isfinite(float(metrics[-1]["valid_flow_error"]))
    trained = load_model(tmp_path / "run" / "model.pt")
    assert trained.timing.frame_dt == pytest.approx(2 * recorded_dt)
    init = tiny_drum_dataset / manifest["runs"][0]["file"]
    out = tmp_path / "rollout.h5"
    code, _, _ = run_cli("rollout", tmp_path / "run" / "model.pt", "--init", init, "--start",
                         "30", "--frames", "3", "-o", out)  # fmt: skip
    assert code == 0
    with TrajectoryFile(out) as traj:
        assert np.allclose(np.diff(traj.time), 2 * recorded_dt)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, dataset, out, port: int, loss_steps: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE="2", LOCAL_RANK=str(rank))  # fmt: skip
    context = distributed.start("cpu", True)
    trainer = Trainer(dataset, out, dataclasses.replace(TINY, loss_steps=loss_steps), context)
    generator = step_generator(TINY.seed, 0, context.rank)
    window = trainer.train_set[
        int(torch.randint(len(trainer.train_set), (1,), generator=generator))
    ]
    local = torch.autograd.grad(
        trainer.window_loss(window, step_generator(1, 0, rank)).mean(), trainer.model.parameters()
    )
    trainer.optimizer.zero_grad()
    trainer.window_loss(window, step_generator(1, 0, rank)).mean().backward()  # through DDP
    averaged = [p.grad.clone() for p in trainer.model.parameters()]
    torch.save({"local": local, "averaged": averaged}, out / f"grads{rank}.pt")
    distributed.stop(context)


@pytest.mark.parametrize("loss_steps", [1, 2])  # 2: two forwards before one backward
def test_ddp_two_cpu_processes_average_gradients(tiny_dataset, tmp_path, loss_steps):
    mp.spawn(_ddp_worker, args=(tiny_dataset, tmp_path, _free_port(), loss_steps), nprocs=2,
             join=True)  # fmt: skip
    g0, g1 = (torch.load(tmp_path / f"grads{r}.pt") for r in (0, 1))
    for local0, local1, avg0, avg1 in zip(
        g0["local"], g1["local"], g0["averaged"], g1["averaged"], strict=True
    ):
        torch.testing.assert_close(avg0, avg1)
        torch.testing.assert_close(avg0, (local0 + local1) / 2, rtol=1e-5, atol=1e-7)


def test_torchrun_cli_trains(tiny_dataset, tmp_path):
    (tmp_path / "tiny.toml").write_text(
        "steps = 2\nvalidate_every = 2\nvalidation_windows = 2\nvalidation_rollout = 2\n"
        'graph_backend = "kdtree"\n[model]\nlatent = 16\nmessage_passing = 1\n'
    )
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", str(_free_port()), "-m", "bgnn_cli", "train", str(tiny_dataset),
        "--out", str(tmp_path / "run"), "--config", str(tmp_path / "tiny.toml"),
        "--distributed", "--device", "cpu",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    trained = load_checkpoint(tmp_path / "run" / "model.pt")
    assert trained.step == 2 and trained.config.model.latent == 16


def test_checkpoint_round_trip_and_bad_files(tiny_dataset, tmp_path):
    trainer = Trainer(tiny_dataset, tmp_path, TINY, Context())
    trainer.fit()
    saved = load_checkpoint(tmp_path / CHECKPOINT)
    assert saved.step == TINY.steps and saved.config == TINY
    assert saved.data["material"]["radius"] == 0.002 and "acceleration" in saved.statistics
    model = saved.build_model()
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a bgnn-sim checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_train_and_rollout_commands(run_cli, tiny_dataset, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(
        "steps = 3\nvalidate_every = 3\nvalidation_windows = 2\nvalidation_rollout = 2\n"
        'graph_backend = "kdtree"\n[model]\nlatent = 16\nmessage_passing = 1\n'
    )
    run = tmp_path / "run"
    code, out, _ = run_cli("train", tiny_dataset, "--out", run, "--config", config)
    assert code == 0 and "3 steps" in out
    assert {"checkpoint.pt", "model.pt", "metrics.csv", "config.toml"} <= {
        p.name for p in run.iterdir()
    }
    code, _, err = run_cli("train", tiny_dataset, "--out", run, "--config", config)
    assert code == 1 and "--resume" in err and err.count("\n") == 1
    code, _, _ = run_cli("train", tiny_dataset, "--out", run, "--config", config, "--resume",
                         "--steps", "4")  # fmt: skip
    assert code == 0 and load_checkpoint(run / "model.pt").step == 4
    init = tiny_dataset / read_manifest(tiny_dataset)["runs"][0]["file"]
    out_h5 = tmp_path / "rollout.h5"
    code, _, _ = run_cli("rollout", run / "model.pt", "--init", init, "--start", "30",
                         "--frames", "5", "-o", out_h5, "--vtk", tmp_path / "vtk")  # fmt: skip
    assert code == 0
    with TrajectoryFile(out_h5) as traj:
        assert traj.complete and traj.n_frames == TINY.model.history + 5
        assert traj.time[-1] == pytest.approx(traj.time[0] + (traj.n_frames - 1) * 1e-3)
    assert (tmp_path / "vtk" / "particles.pvd").exists()
    code, _, err = run_cli("rollout", init, "--init", init, "--frames", "5", "-o",
                           tmp_path / "x.h5")  # fmt: skip
    assert code == 1 and "not a readable checkpoint" in err and not (tmp_path / "x.h5").exists()
    code, _, err = run_cli("rollout", run / "model.pt", "--init", init, "--frames", "5",
                           "-o", tmp_path / "y.h5", "--device", "cuda")  # fmt: skip
    if not torch.cuda.is_available():
        assert code == 1 and "no CUDA GPU" in err


def test_loss_steps_train_through_the_models_own_steps(tiny_dataset, tmp_path):
    config = dataclasses.replace(TINY, noise_std=0.0, pushforward=0, loss_steps=2)
    trainer = Trainer(tiny_dataset, tmp_path / "run", config, Context())
    window, h = trainer.train_set[0], config.model.history
    positions, n = window.positions, len(window.types)
    errors = trainer.window_loss(window, step_generator(0, 0, 0))
    assert errors.shape == (2 * n, 3)
    # The first step is the one-step loss on the data's own history.
    first = trainer.simulator.normalise(positions[h + 1] - 2 * positions[h] + positions[h - 1])
    predicted = trainer._predict(positions[: h + 1], window.types, window, 0, trainer.model)
    torch.testing.assert_close(errors[:n], (predicted - first) ** 2)
    # The second step's error reaches the weights through the first step's positions too.
    parameters = list(trainer.model.parameters())
    through_time = torch.autograd.grad(errors[n:].sum(), parameters)
    advanced = trainer._advanced
    trainer._advanced = lambda history, predicted: advanced(history, predicted.detach())
    cut = torch.autograd.grad(trainer.window_loss(window, step_generator(0, 0, 0))[n:].sum(),
                              parameters)  # fmt: skip
    assert any(not torch.allclose(a, b) for a, b in zip(through_time, cut, strict=True))


@pytest.mark.parametrize("undo_position_noise", [False, True])
def test_the_target_undoes_the_position_noise_only_when_asked(
    tiny_dataset, tmp_path, undo_position_noise
):
    config = dataclasses.replace(TINY, noise_std=1e-4, pushforward=0, loss_steps=1,
                                 undo_position_noise=undo_position_noise)  # fmt: skip
    trainer = Trainer(tiny_dataset, tmp_path / "run", config, Context())
    window, h = trainer.train_set[0], config.model.history
    positions, time = window.positions, window.time[h].item()
    errors = trainer.window_loss(window, step_generator(0, 0, 0))
    # The same draw of noise as the loss's (its first use of the step's generator).
    noisy = noisy_history(positions[: h + 1], 1e-4, window.walls, time, step_generator(0, 0, 0))
    assert not torch.allclose(noisy[-1], positions[h])
    # GNS's target moves with the last frame's noise: its next velocity is the data's.
    target_next = positions[h + 1] + (0.0 if undo_position_noise else noisy[-1] - positions[h])
    target = trainer.simulator.normalise(target_next - 2 * noisy[-1] + noisy[-2])
    predicted = trainer._predict(noisy, window.types, window, 0, trainer.model)
    torch.testing.assert_close(errors, (predicted - target) ** 2)


def test_narrow_outlet_runs_are_drawn_more_often(tiny_dataset, tmp_path):
    config = dataclasses.replace(TINY, event_weight=2.0, narrow_outlet_weight=3.0)
    diameter = 2 * read_manifest(tiny_dataset)["material"]["radius"]
    plain = Trainer(tiny_dataset, tmp_path / "plain", config, Context())
    runs = np.array([k for k, _ in plain.train_set.index])
    outlets = np.array([run["scenario"]["spec"]["outlet"] for run in plain.train_set.runs])
    for diameters in (outlets.min() / diameter - 0.1, outlets.max() / diameter + 0.1):
        weighted = Trainer(tiny_dataset, tmp_path / f"{diameters}",
                           dataclasses.replace(config, narrow_outlet_diameters=diameters),
                           Context())  # fmt: skip
        narrow = outlets[runs] < diameters * diameter
        expected = plain.window_weights * torch.from_numpy(np.where(narrow, 3.0, 1.0))
        assert torch.equal(weighted.window_weights, expected)
    assert narrow.all() and (plain.window_weights == 2.0).any()  # the last: every run narrow


def test_aligned_removals_drop_the_steps_across_a_gate_opening(tiny_dataset, tmp_path):
    config = dataclasses.replace(TINY, stride=3, pushforward=1, event_weight=2.0)
    plain = Trainer(tiny_dataset, tmp_path / "plain", config, Context())
    aligned = Trainer(tiny_dataset, tmp_path / "aligned",
                      dataclasses.replace(config, aligned_removals=True), Context())  # fmt: skip
    windows, h = plain.train_set, config.model.history
    straddles = []
    for k, start in windows.index:
        traj = windows.trajectory(k)
        (opening,) = [w.removed_at for w in traj.walls if w.removed_at is not None]
        times = traj.time[start : start + windows.span : windows.stride]
        # A model step from frame j to j + 1 (j >= h) reads the gate and ends after it opened.
        steps = zip(times[h:-1], times[h + 1 :], strict=True)
        straddles.append(any(a < opening - 1e-9 < opening + 1e-9 < b for a, b in steps))
    straddles = torch.tensor(straddles)
    assert straddles.any() and not straddles.all()
    assert torch.equal(aligned.window_weights, torch.where(straddles, 0.0, plain.window_weights))


def test_onset_windows_are_drawn_more_often(tiny_dataset, tmp_path):
    config = dataclasses.replace(TINY, stride=2, event_weight=2.0, event_span_s=0.05)
    plain = Trainer(tiny_dataset, tmp_path / "plain", config, Context())
    onset = Trainer(tiny_dataset, tmp_path / "onset",
                    dataclasses.replace(config, onset_weight=7.0, onset_span_s=0.004),
                    Context())  # fmt: skip
    windows, h = plain.train_set, config.model.history
    at_onset = []
    for k, start in windows.index:  # the first trained step starts within 4 ms of the opening
        traj = windows.trajectory(k)
        first_step = traj.time[start + h * windows.stride] - traj.attrs["start_time"]
        at_onset.append(-1e-9 < first_step < 0.004 - 1e-9)
    at_onset = torch.tensor(at_onset)
    assert int(at_onset.sum()) == 4 * len(windows.runs)  # 1 ms frames: 4 per run
    assert torch.equal(onset.window_weights, plain.window_weights * torch.where(at_onset, 7.0, 1.0))
