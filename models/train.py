"""Training with save/restore: the tutorial's recipe and a fast default recipe.

The loop works on in-memory tensors (no DataLoader). Batches come from a per-epoch permutation
drawn from a generator seeded by (seed, epoch), and dropout draws from torch's global RNG, whose
state is saved in every checkpoint; so a run interrupted and resumed from its checkpoint ends
with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from models.checkpoint import (
    WRITER,
    Checkpoint,
    CheckpointError,
    check_checkpoint_path,
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from models.cpu import cpu_bf16_reason
from models.data import MNIST, to_input
from models.errors import UserError, check_number, max_threads
from models.network import DeepMNIST
from models.paths import checkpoint_dir

MAX_SEED = 2**32 - 1  # the per-epoch generator is seeded with seed * 1_000_003 + epoch, < 2**64
# --steps at most 10 million, 1,000x the tutorial recipe's 10,000: more would not end in weeks on
# any machine, so it is a typo (10**20 steps was once accepted and would have run forever)
MAX_STEPS = 10**7


@dataclass(frozen=True)
class TrainConfig:
    """Every field is checked on construction (a ValueError naming it)."""

    recipe: str = "fast"
    steps: int = 3_000
    batch_size: int = 128
    lr: float = 2e-3  # peak learning rate (Adam)
    schedule: str = "onecycle"  # "constant" | "onecycle" (linear warmup, cosine decay to 0)
    warmup: float = 0.15  # fraction of steps spent warming up (onecycle)
    dropout: float = 0.5  # the tutorial's keep_prob 0.5
    label_smoothing: float = 0.0
    precision: str = "bf16"  # "fp32" | "bf16" (autocast for forward/backward; weights stay fp32)
    channels_last: bool = True
    seed: int = 0
    threads: int = 0  # 0: all cores
    log_every: int = 100  # tutorial-style "step N, training accuracy" lines; 0 = none
    eval_every: int = 468  # test accuracy for the time-to-accuracy history; 0 = only at the end
    checkpoint_every: int = 500
    subset: int = 0  # train on the first N training images only (tests); 0 = all

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', ' ')} must be at least 1, got {getattr(self, name)}")
        check_number("--steps", self.steps, maximum=MAX_STEPS)
        check_number("learning rate (--lr)", self.lr, above=0)  # inf trains to NaN weights
        check_number("--seed", self.seed, minimum=0, maximum=MAX_SEED)
        check_number("--threads", self.threads, minimum=0, maximum=max_threads())
        check_number("warmup", self.warmup, minimum=0, maximum=1)
        check_number("label smoothing", self.label_smoothing, minimum=0, maximum=1)
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.schedule not in ("constant", "onecycle"):
            raise ValueError(f"unknown schedule {self.schedule!r}; use constant or onecycle")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"unknown precision {self.precision!r}; use fp32 or bf16")
        if min(self.threads, self.log_every, self.eval_every, self.checkpoint_every, self.subset) < 0:
            raise ValueError("threads, log/eval/checkpoint intervals and subset must not be negative")

    def lr_at(self, step: int) -> float:
        if self.schedule == "constant":
            return self.lr
        warm = max(1, int(self.steps * self.warmup))
        if step < warm:
            return self.lr * (step + 1) / warm
        progress = (step - warm) / max(1, self.steps - warm)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


RECIPES: dict[str, TrainConfig] = {
    # The tutorial exactly: Adam 1e-4, batch 50, keep_prob 0.5, 10,000 steps (20,000 in the
    # original TensorFlow text), training accuracy on the current batch every 100 steps.
    "tutorial": TrainConfig(
        recipe="tutorial",
        steps=10_000,
        batch_size=50,
        lr=1e-4,
        schedule="constant",
        precision="fp32",
        channels_last=False,
        eval_every=0,
        checkpoint_every=1_000,
    ),
    # The default: the same network and loss, trained for 6.4 epochs with a one-cycle schedule,
    # bf16 autocast (fp32 where the CPU has no bf16 kernels: recipe_config) and channels_last, to
    # reach >= 99.2% quickly.
    "fast": TrainConfig(),
}
DEFAULT_RECIPE = "fast"


def recipe_config(name: str, **overrides: Any) -> TrainConfig:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    config = RECIPES[name]
    changes = {k: v for k, v in overrides.items() if v is not None}
    if "precision" not in changes and config.precision == "bf16" and cpu_bf16_reason():
        # a recipe's bf16 is a speed choice: where the CPU has no bf16 kernels it would be many
        # times slower than fp32, so the recipe trains in fp32 there (--precision bf16 still forces it)
        print(f"{cpu_bf16_reason()}: training in fp32 (--precision bf16 forces bf16)", file=sys.stderr)
        changes["precision"] = "fp32"
    return dataclasses.replace(config, **changes)


def default_checkpoint_path(recipe: str = DEFAULT_RECIPE, artifacts: str | os.PathLike | None = None) -> Path:
    return checkpoint_dir(artifacts) / f"deep_mnist-{recipe}.safetensors"


@torch.no_grad()
def predict_logits(model: torch.nn.Module, inputs: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out = torch.cat([model(inputs[i : i + batch_size]) for i in range(0, len(inputs), batch_size)])
    model.train(was_training)
    return out


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction correct; ``images`` float32 (N, 1, 28, 28), ``labels`` int64 (N,)."""
    return (predict_logits(model, images).argmax(1) == labels).float().mean().item()


@dataclass
class TrainResult:
    checkpoint: Checkpoint
    path: Path
    test_accuracy: float
    train_seconds: float  # wall time in the training loop, summed over resumed runs (s)
    steps_per_second: float  # the checkpoint's steps over train_seconds (resumed runs included)
    start_step: int = 0  # the step this process started from (> 0: resumed)


class _EpochOrder:
    """Caches the current epoch's permutation (one randperm per epoch, not per step)."""

    def __init__(self, config: TrainConfig, n: int) -> None:
        self.config, self.n = config, n
        self.per_epoch = n // config.batch_size
        self.epoch, self.perm = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, step: int) -> torch.Tensor:
        epoch, within = divmod(step, self.per_epoch)
        if epoch != self.epoch:
            gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
            self.epoch, self.perm = epoch, torch.randperm(self.n, generator=gen)
        bs = self.config.batch_size
        return self.perm[within * bs : (within + 1) * bs]


# Fields that do not change the weights: logging, evaluation and checkpoint intervals, threads.
RUN_ONLY_FIELDS = ("log_every", "eval_every", "checkpoint_every", "threads")


def _training_fields(config: TrainConfig) -> TrainConfig:
    """The config without the fields that do not change the weights (``RUN_ONLY_FIELDS``)."""
    return dataclasses.replace(config, **dict.fromkeys(RUN_ONLY_FIELDS, 0))


def weight_fields(config: TrainConfig) -> dict[str, Any]:
    """The config's fields that change the weights (all but ``RUN_ONLY_FIELDS``), by name."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in RUN_ONLY_FIELDS}


def train(
    config: TrainConfig,
    mnist: MNIST,
    out: str | os.PathLike,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train to ``config.steps`` (or stop early after ``stop_after`` steps, for tests), saving to ``out``."""
    out = Path(out)
    if config.threads:
        torch.set_num_threads(config.threads)
    train_x = to_input(mnist.train_images)  # (60000, 1, 28, 28) float32
    train_y = torch.as_tensor(mnist.train_labels).long()
    if config.subset:
        train_x, train_y = train_x[: config.subset], train_y[: config.subset]
    test_x = to_input(mnist.test_images)
    test_y = torch.as_tensor(mnist.test_labels).long()
    if config.batch_size > len(train_x):
        raise UserError(f"batch size {config.batch_size} exceeds the {len(train_x)} training images")

    torch.manual_seed(config.seed)
    model = DeepMNIST(dropout=config.dropout)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    start, history, seconds = 0, [], 0.0

    check_checkpoint_path(out)  # before any work: training must not end in a failed write
    remove_stale_temporaries(out)
    if resume and not out.is_file():
        print(f"--resume: no checkpoint at {out}; training from scratch", file=sys.stderr)
    if resume and out.is_file():
        ckpt = load_checkpoint(out)
        saved = _saved_config(ckpt, out)
        if _training_fields(saved) != _training_fields(config):
            raise CheckpointError(f"{out}: was written by another configuration ({saved}); not resuming")
        if ckpt.data_checksum != mnist.checksum:
            raise CheckpointError(f"{out}: was trained on other data (checksum {ckpt.data_checksum[:12]}...)")
        if not 0 <= ckpt.step <= config.steps:
            raise CheckpointError(
                f"{out}: is at step {ckpt.step}, outside 0..{config.steps} (--steps); not resuming"
            )
        _restore(ckpt, out, model, optimizer)
        start, history, seconds = ckpt.step, ckpt.history, ckpt.train_seconds
        if ckpt.complete:
            print(f"{out}: already complete at step {start}; nothing to do", file=sys.stderr)
            return TrainResult(
                ckpt, out, ckpt.test_accuracy or 0.0, seconds, start / max(seconds, 1e-9), start
            )
        print(f"resuming {out} at step {start}/{config.steps}", file=sys.stderr)

    def snapshot(step: int, complete: bool, test_accuracy: float | None) -> Checkpoint:
        bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:  # the last good checkpoint stays as it is
            raise TrainingDiverged(
                f"step {step}: weights {', '.join(bad)} became NaN or infinite (lower --lr); "
                f"{out} keeps the last good checkpoint" + ("" if out.is_file() else " (none was written)")
            )
        ckpt = Checkpoint(
            model_state={k: v.contiguous() for k, v in model.state_dict().items()},
            step=step,
            complete=complete,
            config=dataclasses.asdict(config),
            data_checksum=mnist.checksum,
            test_accuracy=test_accuracy,
            history=history,
            train_seconds=seconds,
            optim_state=optimizer.state_dict(),
            rng_state=torch.get_rng_state(),
        )
        ckpt.path = save_or_fallback(ckpt, out)
        return ckpt

    order = _EpochOrder(config, len(train_x))
    end = config.steps if stop_after is None else min(config.steps, start + stop_after)
    bar = tqdm(
        total=config.steps,
        initial=start,
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
        mininterval=0.5,
    )
    correct = seen = 0
    run_loss = None
    model.train()
    tick = time.perf_counter()
    for step in range(start, end):
        idx = order(step)
        x = train_x[idx].contiguous(memory_format=memory_format)  # (B, 1, 28, 28)
        y = train_y[idx]
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(step)
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16"):
                logits = model(x)  # (B, 10)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=config.label_smoothing)
            value = loss.item()
            if not math.isfinite(value):  # stop before the update: the weights are still the last good
                bar.close()
                raise TrainingDiverged(
                    f"step {step + 1}: the loss is {value} (lower --lr); stopped, {out} keeps the last good "
                    "checkpoint" + ("" if out.is_file() else " (none was written yet)")
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        except (torch.OutOfMemoryError, MemoryError) as e:
            raise _out_of_memory(config, e) from None
        except RuntimeError as e:
            if "alloc" not in str(e) and "out of memory" not in str(e):
                raise
            raise _out_of_memory(config, e) from None

        hits = (logits.argmax(1) == y).sum().item()
        correct, seen = correct + hits, seen + len(y)
        run_loss = value if run_loss is None else 0.98 * run_loss + 0.02 * value
        bar.update(1)
        done = step + 1
        if config.log_every and done % config.log_every == 0:
            bar.set_postfix(loss=f"{run_loss:.4f}", acc=f"{correct / seen:.4f}")
            if config.recipe == "tutorial":
                bar.write(f"step {done}, training accuracy {hits / len(y):g}")
            correct = seen = 0
        at_eval = config.eval_every and done % config.eval_every == 0 and done < config.steps
        at_ckpt = config.checkpoint_every and done % config.checkpoint_every == 0 and done < end
        if at_eval or at_ckpt:
            seconds += time.perf_counter() - tick
            if at_eval:
                acc = accuracy(model, test_x, test_y)
                history.append({"step": done, "seconds": round(seconds, 2), "test_accuracy": acc})
                bar.write(f"step {done}: test accuracy {acc:.4f} after {seconds:.1f} s of training")
            if at_ckpt:
                snapshot(done, False, None)
            tick = time.perf_counter()
    seconds += time.perf_counter() - tick
    bar.close()

    if end < config.steps:  # stopped early on purpose (tests): leave a resumable checkpoint
        ckpt = snapshot(end, False, None)
        return TrainResult(ckpt, out, float("nan"), seconds, end / max(seconds, 1e-9), start)
    test_acc = accuracy(model, test_x, test_y)
    history.append({"step": end, "seconds": round(seconds, 2), "test_accuracy": test_acc})
    ckpt = snapshot(end, True, test_acc)
    return TrainResult(ckpt, out, test_acc, seconds, end / max(seconds, 1e-9), start)


class TrainingDiverged(UserError):
    """The loss or the weights became NaN or infinite; nothing after the last good checkpoint is saved."""


def _out_of_memory(config: TrainConfig, error: BaseException) -> UserError:
    return UserError(
        f"--batch-size {config.batch_size}: out of memory in a training step ({str(error).splitlines()[0][:120]}); "
        "use a smaller batch size"
    )


def _saved_config(ckpt: Checkpoint, out: Path) -> TrainConfig:
    """The checkpoint's TrainConfig; a field this version does not know (a newer writer) or a
    damaged value is named, with the version that wrote the file."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    if not isinstance(ckpt.config, dict):
        raise CheckpointError(f"{out}: damaged config (not a mapping); written by {ckpt.writer}")
    unknown = sorted(set(ckpt.config) - known)
    if unknown:
        raise CheckpointError(
            f"{out}: config key(s) {', '.join(map(repr, unknown))} unknown to this version "
            f"({WRITER}); the checkpoint was written by {ckpt.writer}; not resuming"
        )
    try:
        return TrainConfig(**ckpt.config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{out}: damaged config ({e}); written by {ckpt.writer}") from None


def _restore(ckpt: Checkpoint, out: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Weights, optimiser and RNG state from ``ckpt``; a damaged field is named."""
    for what, restore in (
        ("weights", lambda: model.load_state_dict(ckpt.model_state)),
        (
            "optimiser state",
            lambda: ckpt.optim_state is not None and optimizer.load_state_dict(ckpt.optim_state),
        ),
        ("RNG state", lambda: ckpt.rng_state is not None and torch.set_rng_state(ckpt.rng_state)),
    ):
        try:
            restore()
        except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as e:
            raise CheckpointError(
                f"{out}: damaged {what} ({str(e).splitlines()[0][:200]}); written by {ckpt.writer}"
            ) from None
    # a damaged optimiser state can load and still not fit the parameters; fail now, not mid-step
    for group in optimizer.state_dict()["state"].values():
        for key, value in group.items():
            if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all()):
                raise CheckpointError(f"{out}: damaged optimiser state ({key} holds NaN or infinity)")
    for p in model.parameters():
        state = optimizer.state.get(p, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state and state[key].shape != p.shape:
                raise CheckpointError(
                    f"{out}: damaged optimiser state ({key} of shape {tuple(state[key].shape)} for a "
                    f"parameter of shape {tuple(p.shape)}); written by {ckpt.writer}"
                )


def save_or_fallback(ckpt: Checkpoint, out: Path) -> Path:
    """Save to ``out``; if that fails now (a full disk, a folder made read-only during training),
    save to the system's temporary folder, so the trained weights survive, and raise an error
    saying where they are."""
    try:
        return save_checkpoint(ckpt, out)
    except OSError as e:
        fallback = Path(tempfile.gettempdir()) / out.name
        try:
            save_checkpoint(ckpt, fallback)
        except OSError as e2:
            raise UserError(
                f"{out}: cannot save the checkpoint ({e.strerror or e}), nor in {fallback} ({e2.strerror or e2})"
            ) from None
        raise UserError(
            f"{out}: cannot save the checkpoint ({e.strerror or e}); saved it to {fallback} instead "
            f"(step {ckpt.step}; move it to {out} and use --resume to continue)"
        ) from None


ACCURACY_TARGETS = (0.99, 0.992)  # test accuracies whose time to reach a run reports (fractions)


def time_to_accuracy(history: list[dict[str, Any]], target: float) -> float | None:
    """Training seconds at the first evaluation that reached ``target`` (None if never)."""
    for point in history:
        if point["test_accuracy"] >= target:
            return point["seconds"]
    return None
