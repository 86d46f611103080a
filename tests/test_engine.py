"""The rollout engine: exact replay of LIGGGHTS, divergence handling, model invariance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bgnn_sim.engine.rollout import DivergenceError, rollout, rollout_to_file
from bgnn_sim.engine.state import (
    Scene,
    Sink,
    aligned_start,
    frame_stride,
    removal_frames,
    state_from_trajectory,
)
from bgnn_sim.errors import BgnnError, ConfigError
from bgnn_sim.geometry.wall import Wall
from bgnn_sim.graph.features import GraphSpec, build_graph
from bgnn_sim.io.hdf5 import TrajectoryFile
from bgnn_sim.models.bgnn import BGNN, BGNNConfig
from bgnn_sim.models.loading import load_model
from bgnn_sim.models.simulator import BGNNSimulator
from bgnn_sim.pretrained import pretrained_model
from tests.helpers import liggghts_hopper_run

HISTORY = 5
STATS = {
    "velocity": {"mean": [0.0, 0.0, -1e-5], "std": [3e-5, 3e-5, 4e-5]},
    "acceleration": {"mean": [0.0, 0.0, -1e-7], "std": [2e-6, 2e-6, 2e-6]},
}
# Today's recipe: 3-radius particle cutoff, 4-radius walls, contact features, merged wall nodes.
SPEC = GraphSpec(0.006, 0.008, radius=0.002, contact_features=True, merge_wall_nodes=True)


def fixture_run():
    """The committed LIGGGHTS hopper run, and its scene: walls and the sink 20 mm below."""
    truth = liggghts_hopper_run()
    return truth, Scene(truth.walls, frame_dt=1e-3, sinks=[Sink(-0.02)])


class CheatingBackend:
    """Builds the graph like a real backend, then returns the true acceleration."""

    history = HISTORY

    def __init__(self, truth) -> None:
        self.truth = truth
        self.graphs = 0

    def acceleration(self, scene, state):
        k = int(np.argmin(np.abs(self.truth.time - state.time)))
        history = state.history[:, state.active]
        types = state.types[state.active] - 1
        build_graph(history, types, scene.walls, state.time, SPEC, STATS, scene.frame_dt)
        self.graphs += 1
        x = torch.from_numpy(self.truth.positions[k - 1 : k + 2])[:, state.active]
        return x[2] - 2 * x[1] + x[0]


@pytest.mark.slow
def test_cheating_backend_reproduces_liggghts(tmp_path):
    truth, scene = fixture_run()
    state = state_from_trajectory(truth, HISTORY, HISTORY)
    frames = truth.n_frames - 1 - HISTORY
    backend = CheatingBackend(truth)
    rollout_to_file(backend, scene, state, frames, tmp_path / "replay.h5")
    assert backend.graphs == frames
    with TrajectoryFile(tmp_path / "replay.h5") as replay:
        assert replay.complete and replay.n_frames == truth.n_frames - 1
        out = replay.read()
    np.testing.assert_array_equal(out.active, truth.active[1:])
    assert truth.active[-1].sum() < truth.active[0].sum()  # the sink removed particles
    np.testing.assert_allclose(out.time, truth.time[1:], atol=1e-12)
    live = out.active
    np.testing.assert_allclose(out.positions[live], truth.positions[1:][live], rtol=0, atol=1e-12)


class CheatingWindowBackend:
    """A windowed backend (as LaM-SLidE) that returns the true positions of the next 4 frames."""

    history = HISTORY

    def __init__(self, truth) -> None:
        self.truth, self.windows = truth, 0

    def window(self, scene, state):
        k = int(np.argmin(np.abs(self.truth.time - state.time)))
        self.windows += 1
        return torch.from_numpy(self.truth.positions[k + 1 : k + 5])


def test_cheating_window_backend_reproduces_liggghts(tmp_path):
    truth, scene = fixture_run()
    state = state_from_trajectory(truth, HISTORY, HISTORY)
    frames = 4 * ((truth.n_frames - 1 - HISTORY) // 4)
    backend = CheatingWindowBackend(truth)
    rollout_to_file(backend, scene, state, frames, tmp_path / "replay.h5")
    assert backend.windows == frames // 4
    with TrajectoryFile(tmp_path / "replay.h5") as replay:
        out = replay.read()
    expected = slice(1, HISTORY + 1 + frames)
    np.testing.assert_array_equal(out.active, truth.active[expected])  # the sink still acts
    live = out.active
    np.testing.assert_allclose(out.positions[live], truth.positions[expected][live], atol=1e-12)


def test_a_model_that_steps_several_frames_reads_its_history_at_its_stride():
    truth, _ = fixture_run()  # a frame every ms
    assert frame_stride(truth, 3e-3) == 3
    state = state_from_trajectory(truth, 10, 2, stride=frame_stride(truth, 3e-3))
    np.testing.assert_array_equal(state.history.numpy(), truth.positions[[4, 7, 10]])
    assert state.time == truth.time[10]
    with pytest.raises(BgnnError, match="not a whole number"):
        frame_stride(truth, 2.5e-3)
    with pytest.raises(BgnnError, match="needs 7 frames of history"):
        state_from_trajectory(truth, 5, 2, stride=3)


class ExplodingBackend:
    history = HISTORY

    def acceleration(self, scene, state):
        boost = 1.0 if state.time > 0.3095 else 0.0  # from the frame at 0.31 s on
        return torch.full((int(state.active.sum()), 3), boost, dtype=state.history.dtype)


def test_divergence_stops_with_frames_kept(tmp_path):
    truth, scene = fixture_run()
    state = state_from_trajectory(truth, HISTORY, HISTORY)
    with pytest.raises(DivergenceError, match="diverged at t = 0.3110 s"):
        rollout_to_file(ExplodingBackend(), scene, state, 100, tmp_path / "boom.h5")
    with TrajectoryFile(tmp_path / "boom.h5") as kept:
        assert not kept.complete and kept.time[-1] == pytest.approx(0.31)
        assert np.isfinite(kept.read().positions).all()


@pytest.mark.parametrize("aggregation", ["mean", "sum", "vpa"])
def test_model_is_invariant_to_translating_the_scene(aggregation):
    torch.manual_seed(0)
    truth, scene = fixture_run()
    model = BGNN(BGNNConfig(latent=32, message_passing=2, aggregation=aggregation)).double()
    simulator = BGNNSimulator(model, STATS, SPEC, frame_dt=1e-3)
    state = state_from_trajectory(truth, 100, HISTORY)
    shift = np.array([0.3, -1.2, 0.7])
    moved = [Wall(w.name, w.vertices + shift, w.faces, w.motion, w.removed_at) for w in scene.walls]
    graph = simulator.graph(state.history, state.types, scene.walls, state.time, 1e-3)
    shifted = simulator.graph(
        state.history + torch.from_numpy(shift), state.types, moved, state.time, 1e-3
    )
    assert graph.n_wall_nodes > 0 and graph.edge_index.shape == shifted.edge_index.shape
    model.float()
    np.testing.assert_allclose(model(graph).detach(), model(shifted).detach(), atol=1e-5)


@pytest.mark.slow
def test_verlet_lists_leave_a_rollout_unchanged():
    """Kept neighbour lists while the hopper discharges: particles leave into the sink."""
    torch.manual_seed(0)
    truth, scene = fixture_run()
    model = BGNN(BGNNConfig(latent=32, message_passing=2))
    ends, frames = [], 40
    for skin in (None, 2e-3):
        simulator = BGNNSimulator(model, STATS, SPEC, frame_dt=1e-3, skin=skin)
        state = state_from_trajectory(truth, 60, HISTORY)
        ends.append(rollout(simulator, scene, state, frames))
    assert torch.equal(ends[0].positions, ends[1].positions)
    assert ends[1].active.sum() < state.active.sum()
    assert 1 <= simulator.lists.wall_builds < frames


@pytest.mark.slow
def test_compiled_network_gives_the_plain_results():
    """torch.compile (dynamic shapes) on graphs of two sizes, one with wall nodes."""
    torch.manual_seed(0)
    truth, scene = fixture_run()
    model = BGNN(BGNNConfig(latent=32, message_passing=2)).eval()
    simulator = BGNNSimulator(model, STATS, SPEC, frame_dt=1e-3)
    graphs = []
    for frame in (HISTORY, 100):
        state = state_from_trajectory(truth, frame, HISTORY)
        history = state.history[:, state.active]
        graphs.append(simulator.graph(history, state.types[state.active], scene.walls,
                                      state.time, 1e-3))  # fmt: skip
    assert graphs[0].n_particles != graphs[1].n_particles and graphs[1].n_wall_nodes > 0
    simulator.compile()
    with torch.no_grad():
        for graph in graphs:
            torch.testing.assert_close(simulator.network(graph), model(graph), rtol=1e-4,
                                       atol=1e-5)  # fmt: skip


def test_bfloat16_processor_stays_close_to_float32():
    """--precision bfloat16 on the shipped hopper: the processor's products in bfloat16 move
    the accelerations a little (2-3 % RMS on a discharging bed), the whole network cast to
    bfloat16 would move them ~9 %; float32 is the plain network, bit for bit."""
    truth, scene = fixture_run()
    trained = load_model(pretrained_model("hopper"), "cpu")
    simulator = trained.backend
    simulator.lists = None
    stride = frame_stride(truth, trained.timing.frame_dt)
    state = state_from_trajectory(truth, 100, simulator.history, stride=stride)
    scene = Scene(truth.walls, trained.timing.frame_dt, scene.sinks)
    accelerations = {}
    with torch.inference_mode():
        for precision in ("float32", "bfloat16"):
            simulator.use_precision(precision)
            accelerations[precision] = simulator.acceleration(scene, state)
        history = state.history[-(simulator.history + 1) :, state.active]
        plain = simulator.denormalise(simulator.model(simulator.graph(
            history, state.types[state.active], scene.walls, state.time, scene.frame_dt)),
            history)  # fmt: skip
    assert torch.equal(accelerations["float32"], plain)
    change = accelerations["bfloat16"] - plain
    relative = change.pow(2).mean().sqrt() / plain.pow(2).mean().sqrt()
    assert 1e-4 < relative < 0.05


def test_unknown_precision_is_refused():
    simulator = load_model(pretrained_model("hopper"), "cpu").backend
    with pytest.raises(ConfigError, match="float16.*float32, bfloat16"):
        simulator.use_precision("float16")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rollout_matches_cpu():
    torch.manual_seed(0)
    truth, scene = fixture_run()
    model = BGNN(BGNNConfig(latent=32, message_passing=2))
    ends = []
    for device in ("cpu", "cuda"):
        simulator = BGNNSimulator(model.to(device), STATS, SPEC, frame_dt=1e-3)
        state = state_from_trajectory(truth, 100, HISTORY).to(device)
        ends.append(rollout(simulator, scene, state, 10).positions.cpu())
    torch.testing.assert_close(ends[0], ends[1], rtol=0, atol=1e-6)


class CheatingNetwork(torch.nn.Module):
    """Stands in for the BGNN inside a real BGNNSimulator: returns the normalised true
    acceleration of the frame it is called for (frames are called in order from `first`)."""

    def __init__(self, truth, first: int, known_gravity: bool) -> None:
        super().__init__()
        self.truth, self.frame = truth, first
        self.config = BGNNConfig(history=HISTORY, known_gravity=known_gravity)
        self.simulator = None

    def forward(self, graph, processor_dtype=None):
        x = torch.from_numpy(self.truth.positions[self.frame - 1 : self.frame + 2])
        present = torch.from_numpy(self.truth.active[self.frame - 1 : self.frame + 2].all(0))
        self.frame += 1
        acceleration = (x[2] - 2 * x[1] + x[0])[present[:]]
        return self.simulator.normalise(acceleration).double()


@pytest.mark.slow
@pytest.mark.parametrize("known_gravity", [False, True])
def test_gravity_term_round_trips_through_a_cheating_network(tmp_path, known_gravity):
    """The network's target is a - g dt^2 and the simulator adds g dt^2 back: a network that
    knows the target reproduces LIGGGHTS; one that outputs zero falls freely."""
    truth, scene = fixture_run()
    state = state_from_trajectory(truth, HISTORY, HISTORY)
    network = CheatingNetwork(truth, HISTORY, known_gravity)
    simulator = BGNNSimulator(network, STATS, SPEC, frame_dt=1e-3)
    network.simulator = simulator
    frames = 60
    rollout_to_file(simulator, scene, state, frames, tmp_path / "replay.h5")
    with TrajectoryFile(tmp_path / "replay.h5") as replay:
        out = replay.read()
    both = out.active[-1] & truth.active[HISTORY + frames]
    np.testing.assert_allclose(out.positions[-1][both], truth.positions[HISTORY + frames][both],
                               rtol=0, atol=1e-9)  # fmt: skip
    g_dt2 = -9.81e-6 if known_gravity else STATS["acceleration"]["mean"][2]
    free = simulator.denormalise(torch.zeros(4, 3), torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(free, torch.tensor([[0.0, 0.0, g_dt2]] * 4).double())


@pytest.mark.parametrize("wall_channel", [False, True])
def test_a_frame_without_particles_gives_no_accelerations(wall_channel):
    """An emptied hopper still steps: the network maps no particles to no accelerations."""
    truth, scene = fixture_run()
    model = BGNN(BGNNConfig(latent=16, message_passing=2, wall_channel=wall_channel))
    simulator = BGNNSimulator(model, STATS, SPEC, frame_dt=1e-3)
    state = state_from_trajectory(truth, 100, HISTORY)
    state.active[:] = False
    assert simulator.acceleration(scene, state).shape == (0, 3)


def test_a_rollout_started_at_aligned_start_lands_on_the_gate_opening(tiny_dataset):
    with TrajectoryFile(next((tiny_dataset / "trajectories").glob("*.h5"))) as run:
        (opening,) = removal_frames(run)
        assert run.time[opening] == pytest.approx(run.walls[-1].removed_at)
        for stride in (1, 2, 3, 4, 5):
            start = aligned_start(run, 5 * stride, stride)
            assert 0 <= start - 5 * stride < stride and (opening - start) % stride == 0
        assert aligned_start(run, opening + 1, 4) == opening + 1  # after it: nothing to land on
