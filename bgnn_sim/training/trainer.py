"""The training loop: noisy windows -> graph -> BGNN -> MSE on normalised accelerations.

Everything random at step s (windows drawn, noise, pushforward depth) comes from a generator
seeded by (seed, s, rank), and the learning rate is a function of s: a checkpoint then holds
all the state there is (weights, Adam moments, step), so a resumed run is exactly the
uninterrupted one.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from bgnn_sim.configfile import write_toml
from bgnn_sim.dem.config import Timing
from bgnn_sim.dem.dataset import read_manifest, strided_statistics, training_description
from bgnn_sim.device import use_threads
from bgnn_sim.engine.rollout import euler_step
from bgnn_sim.errors import ConfigError
from bgnn_sim.models.bgnn import BGNN
from bgnn_sim.models.simulator import BGNNSimulator
from bgnn_sim.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from bgnn_sim.training.config import TrainConfig
from bgnn_sim.training.distributed import Context
from bgnn_sim.training.noise import noisy_history
from bgnn_sim.training.validation import validate
from bgnn_sim.training.windows import Window, WindowDataset

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
BEST = "best.pt"
METRIC_FIELDS = (
    "step", "loss", "lr", "valid_loss", "valid_flow_error", "valid_crossings",
    "valid_energy_error", "valid_score", "seconds",
)  # fmt: skip


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The random stream of one step of one process."""
    state = np.random.SeedSequence([seed, step, rank]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))


class Trainer:
    """Trains a BGNN on a dataset folder, writing checkpoints and metrics to `out_dir`."""

    def __init__(
        self, dataset_dir: Path, out_dir: Path, config: TrainConfig, context: Context
    ) -> None:
        self.out_dir, self.config, self.context = Path(out_dir), config, context
        # Multithreaded scatter-adds sum in a varying order; exact resume needs a fixed one.
        torch.use_deterministic_algorithms(config.deterministic, warn_only=True)
        use_threads(config.threads)
        manifest, stride = read_manifest(dataset_dir), config.stride
        self.statistics = strided_statistics(dataset_dir, manifest, stride)
        self.data = training_description(dataset_dir, manifest, stride)
        material = manifest["material"]
        self.frame_dt = Timing(**self.data["timing"]).frame_dt  # the model's frame
        length = config.model.history + 1 + config.pushforward + config.loss_steps
        self.train_set = WindowDataset(dataset_dir, "train", length, stride)
        self.valid_set = WindowDataset(dataset_dir, "valid", config.model.history + 2, stride)
        # The first trained frame of a window is its frame h + 1, from its frame h.
        h = config.model.history
        self.window_weights = self.train_set.event_weights(
            h + 1, config.event_weight, config.event_span_s
        ) * self.train_set.event_weights(h, config.onset_weight, config.onset_span_s)
        if config.narrow_outlet_diameters is not None:
            self.window_weights *= self.train_set.narrow_outlet_weights(
                config.narrow_outlet_diameters, config.narrow_outlet_weight
            )
        if config.aligned_removals:
            self.window_weights *= self.train_set.removal_weights(h)
        with torch.random.fork_rng():  # the initial weights depend on the seed only
            torch.manual_seed(config.seed)
            self.model = BGNN(config.model).to(context.device)
        self.simulator = BGNNSimulator(
            self.model, self.statistics, config.graph_spec(material["radius"]), self.frame_dt,
            config.graph_backend,
        )  # fmt: skip
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.average = (
            None if config.ema_decay is None
            else AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay))
        )  # fmt: skip
        self.step = 0
        self.metrics: dict = {}
        self.fine_tuning = False  # started from a trained model: validate it before step 1
        self.network = DistributedDataParallel(self.model) if context.distributed else self.model

    # -- state -------------------------------------------------------------------------------

    def checkpoint(self, with_optimizer: bool = True) -> Checkpoint:
        return Checkpoint(
            config=self.config,
            statistics=self.statistics,
            data=self.data,
            step=self.step,
            model=self._weights(),
            optimizer=self.optimizer.state_dict() if with_optimizer else None,
            metrics=self.metrics,
            average=(
                self.average.state_dict() if with_optimizer and self.average is not None else None
            ),
        )

    def _weights(self) -> dict:
        """A copy of the model's state dict (judged_weights() loads other weights into the
        model's own tensors, so a reference would change under a checkpoint)."""
        return {name: value.clone() for name, value in self.model.state_dict().items()}

    @contextmanager
    def judged_weights(self):
        """Within: the model holds the weights that are validated and shipped (the moving
        average, once there is one); after: the trained weights again."""
        if self.average is None or self.average.n_averaged == 0:
            yield
            return
        trained = self._weights()
        self.model.load_state_dict(self.average.module.state_dict())
        try:
            yield
        finally:
            self.model.load_state_dict(trained)

    def start_from(self, path: Path) -> None:
        """Fine-tune: start from a trained model's weights (a run's checkpoint or a shipped
        model) with this configuration's own steps, schedule and a fresh optimiser."""
        saved = load_checkpoint(path, map_location=str(self.context.device))
        if saved.config.model != self.config.model:
            raise ConfigError(
                f"{path} holds a network of another shape ({saved.config.model}) than the "
                f"configuration's [model] ({self.config.model})"
            )
        self.model.load_state_dict(saved.model)
        self.fine_tuning = True

    def resume(self) -> None:
        """Continue from out_dir/checkpoint.pt (metrics after it are dropped)."""
        saved = load_checkpoint(self.out_dir / CHECKPOINT, map_location=str(self.context.device))
        self.model.load_state_dict(saved.model)
        self.optimizer.load_state_dict(saved.optimizer)
        if self.average is not None and saved.average is not None:
            self.average.load_state_dict(saved.average)
        self.step, self.metrics = saved.step, saved.metrics
        _truncate_metrics(self.out_dir / METRICS, self.step)

    # -- one step ----------------------------------------------------------------------------

    def window_loss(self, window: Window, generator: torch.Generator) -> torch.Tensor:
        """Squared errors [loss_steps * n, 3] of the normalised accelerations of one window's
        trained steps."""
        h, device = self.config.model.history, self.context.device
        positions, types, times = window.positions.to(device), window.types.to(device), window.time
        history = noisy_history(
            positions[: h + 1], self.config.noise_std, window.walls, times[h].item(), generator
        )
        # GNS: shift the target by the last input frame's noise, so that the model learns to
        # correct noisy velocities rather than to reproduce them; with undo_position_noise the
        # target stays the data's frame, and the model learns to undo the positions' noise too.
        shift = 0.0 if self.config.undo_position_noise else history[-1] - positions[h]
        depth = self._pushforward_depth(generator)
        history = self._pushforward(history, types, window, depth)
        errors = []
        for k in range(depth, depth + self.config.loss_steps):
            target_next = positions[h + 1 + k] + (shift if k == 0 else 0.0)
            target = self.simulator.normalise(target_next - 2 * history[-1] + history[-2])
            # Only the last call goes through DDP, which expects one forward per backward; the
            # earlier calls' gradients reach the same parameters before its hooks fire.
            last = k == depth + self.config.loss_steps - 1
            predicted = self._predict(
                history, types, window, k, self.network if last else self.model
            )
            errors.append((predicted - target) ** 2)
            if not last:  # the next step sees this one's prediction, gradient and all
                history = self._advanced(history, predicted)
        return torch.cat(errors)

    def _predict(self, history, types, window: Window, k: int, network) -> torch.Tensor:
        """Normalised accelerations [n, 3] for positions [H+1, n, 3] at the window's frame h + k."""
        time = window.time[self.config.model.history + k].item()
        return network(self.simulator.graph(history, types, window.walls, time, self.frame_dt))

    def _advanced(self, history: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
        """The history [H+1, n, 3] one model step on, by normalised accelerations [n, 3]."""
        acceleration = self.simulator.denormalise(predicted, history)
        return torch.cat([history[1:], euler_step(history, acceleration)[None]])

    def _pushforward_depth(self, generator: torch.Generator) -> int:
        """Unroll depth of one window: staged (deeper unrolls allowed as training goes on) and,
        with `pushforward_chance`, most windows trained on the data's own history."""
        deepest, chance = self.config.pushforward_depths(self.step), self.config.pushforward_chance
        if chance is None:
            return int(torch.randint(deepest + 1, (1,), generator=generator))
        unrolled = float(torch.rand((), generator=generator)) < chance
        if not unrolled or deepest == 0:
            return 0
        return 1 + int(torch.randint(deepest, (1,), generator=generator))

    def _pushforward(self, history, types, window: Window, depth: int) -> torch.Tensor:
        """Roll the model `depth` frames without gradient: it learns from its own errors."""
        with torch.no_grad():
            for k in range(depth):
                history = self._advanced(
                    history, self._predict(history, types, window, k, self.model)
                )
        return history

    def train_step(self) -> float:
        """One optimiser step over `windows_per_step` windows; returns the mean loss.

        Each window is its own forward and backward pass (DDP synchronises the gradients once,
        after the last); the loss is the mean over all particles of all windows.
        """
        config = self.config
        generator = step_generator(config.seed, self.step, self.context.rank)
        picks = torch.multinomial(
            self.window_weights, config.windows_per_step, replacement=True, generator=generator
        )
        windows = [self.train_set[int(i)] for i in picks]
        count = 3 * sum(len(w.types) for w in windows) * config.loss_steps
        for group in self.optimizer.param_groups:
            group["lr"] = config.lr_at(self.step)
        self.optimizer.zero_grad()
        total = 0.0
        for k, window in enumerate(windows):
            last = k == len(windows) - 1
            with nullcontext() if last or not self.context.distributed else self.network.no_sync():
                errors = self.window_loss(window, generator)
                (errors.sum() / count).backward()
            total += errors.sum().item()
        self.optimizer.step()
        if self.average is not None:
            self.average.update_parameters(self.model)
        self.step += 1
        return total / count

    # -- the loop ----------------------------------------------------------------------------

    def _validate(self, main: bool) -> dict:
        """Validate; keep the model with the best rollout score so far as best.pt (the
        checkpoint to ship is chosen by the flow, not by the one-step loss)."""
        best = self.metrics.get("best_valid_score", math.inf)
        with self.judged_weights():
            metrics = validate(self, self.config)
            score = metrics.get("valid_score", math.nan)
            self.metrics = {**metrics, "best_valid_score": best,
                            "best_step": self.metrics.get("best_step")}  # fmt: skip
            if score < best:
                self.metrics |= {"best_valid_score": score, "best_step": self.step}
                if main:
                    save_checkpoint(self.out_dir / BEST, self.checkpoint(with_optimizer=False))
        return metrics

    def fit(self, on_step: Callable[[int, float], None] | None = None) -> Checkpoint:
        """Train up to config.steps, validating, logging and checkpointing on the way."""
        config, main = self.config, self.context.is_main
        self.out_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        if self.fine_tuning and self.step == 0:
            # The starting model's own score: best.pt is never worse than where the run began.
            row = {"step": 0, **self._validate(main), "seconds": 0.0}
            if main:
                _append_metrics(self.out_dir / METRICS, row)
        while self.step < config.steps:
            loss = self.train_step()
            row = {"step": self.step, "loss": loss, "lr": config.lr_at(self.step - 1)}
            if self.step % config.validate_every == 0 or self.step == config.steps:
                row.update(self._validate(main))
            if main and (self.step % config.log_every == 0 or "valid_loss" in row):
                row["seconds"] = round(time.perf_counter() - started, 2)
                _append_metrics(self.out_dir / METRICS, row)
            if main and (self.step % config.checkpoint_every == 0 or self.step == config.steps):
                save_checkpoint(self.out_dir / CHECKPOINT, self.checkpoint())
            if on_step is not None:
                on_step(self.step, loss)
        with self.judged_weights():
            final = self.checkpoint(with_optimizer=False)
        if main:
            save_checkpoint(self.out_dir / "model.pt", final)
        return final


def write_config(out_dir: Path, config: TrainConfig) -> None:
    """The resolved configuration next to the run's outputs, as a TOML file that `--config`
    reads back."""
    write_toml(Path(out_dir) / "config.toml", asdict(config))


def _append_metrics(path: Path, row: dict) -> None:
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow(row)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows written after the checkpoint a run resumes from."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
    with path.open("w", newline="") as f:
        # A run written by an earlier version may log other columns: they are dropped.
        writer = csv.DictWriter(f, fieldnames=METRIC_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
