"""Training summaries: what one ``deepmnist train`` run measured, as a small JSON file.

``deepmnist train`` writes ``<checkpoint stem>.summary.json`` beside its checkpoint and, with
``--summary PATH``, the same file there too (both atomically): the recipe and the config fields that
change the weights, steps, batch, epochs, test accuracy, training seconds, steps/s, the time to
each of ``models.train.ACCURACY_TARGETS`` (None when not reached), the checkpoint's per-epoch
history, the checkpoint's file name (never a folder) and SHA-256, the data checksum, the command
(absolute paths reduced as ``exporters.formats.portable_path`` does), torch version, CPU model,
threads, the load averages before and after training (was the machine busy?), git commit and the
UTC time training started.

``deepmnist train-summary SUMMARY.json... [--markdown]`` prints summaries as one table, one line
per run, in the order given, then the command, commit and machine of each: docs/data-and-training.md's
table is its output over the committed ``results/training-*.json`` (tests/cli/test_docs.py).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report.cells import Table, markdown_code, markdown_text
from bench.results.environment import collect_environment
from bench.results.store import check_writable_dir
from exporters.formats import portable_path
from models.atomic import atomic_write_text, refuse_special, sha256_file
from models.errors import UserError, shown
from models.files import read_text_limited
from models.outputs import same_file
from models.train import ACCURACY_TARGETS, TrainConfig, time_to_accuracy, weight_fields

FORMAT = "deepmnist-training-summary/1"
SUFFIX = ".summary.json"


class SummaryError(UserError):
    """A training summary that is missing, not JSON or not a summary; names the file."""


def summary_path(checkpoint: str | os.PathLike) -> Path:
    """The summary beside a checkpoint: ``deep_mnist-fast.safetensors`` -> ``deep_mnist-fast.summary.json``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + SUFFIX)


def accuracy_label(target: float) -> str:
    """``0.992`` -> ``99.2%``: the key of ``time_to_accuracy_s`` and the CLI's wording."""
    return f"{target * 100:.1f}%"


def check_summary_path(path: str | os.PathLike, checkpoint: str | os.PathLike | None = None) -> None:
    """Refuse, before training, a ``--summary`` path that cannot be written (a folder, a FIFO or
    device, or a file in a folder that is not writable), or that names the ``checkpoint`` file
    (``--out``) in any spelling: the summary would overwrite the checkpoint."""

    path = Path(path)
    if path.is_dir():
        raise SummaryError(f"--summary {path}: is a folder; give a file name (say {path / 'training.json'})")
    refuse_special(path, "--summary")
    if checkpoint is not None and same_file(path, checkpoint):
        raise SummaryError(
            f"--summary {path}: the same file as --out {checkpoint}; the summary would overwrite the "
            "checkpoint (give another name)"
        )
    check_writable_dir(path.parent, option="--summary")


def load_average() -> list[float] | None:
    """``os.getloadavg()`` (1, 5 and 15 minutes), rounded to 0.01; None where the OS has none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def portable_command(argv: Sequence[str]) -> str:
    """``deepmnist ARGV`` with every absolute path as ``portable_path`` names it (a path outside
    the checkout becomes ``<elsewhere>/NAME``), so a committed summary names no local folder."""
    import shlex

    def portable(arg: str) -> str:
        flag, eq, value = arg.partition("=")
        if eq and arg.startswith("--"):
            return f"{flag}={portable_path(value)}"
        return portable_path(arg)

    return shlex.join(["deepmnist", *(portable(arg) for arg in argv)])


def training_summary(
    result: Any,  # models.train.TrainResult
    mnist: Any,  # models.data.MNIST
    *,
    argv: Sequence[str],
    started_utc: str,
    loadavg_start: list[float] | None,
    loadavg_end: list[float] | None,
) -> dict[str, Any]:
    """The summary of a finished ``train`` call (``result``) on ``mnist``."""
    import torch

    ckpt = result.checkpoint
    config = TrainConfig(**ckpt.config)
    train_images = min(config.subset, len(mnist.train_labels)) if config.subset else len(mnist.train_labels)
    env = collect_environment()
    return {
        "format": FORMAT,
        "command": portable_command(argv),
        "recipe": config.recipe,
        "config": weight_fields(config),
        "eval_every": config.eval_every,  # steps between the test-set evaluations of the history
        "steps": ckpt.step,
        "batch_size": config.batch_size,
        "train_images": train_images,
        "epochs": round(ckpt.step * config.batch_size / train_images, 3),
        "test_accuracy": result.test_accuracy,
        "test_images": len(mnist.test_labels),
        "train_seconds": result.train_seconds,  # unrounded: the table rounds once, as the CLI does
        "steps_per_second": result.steps_per_second,
        "time_to_accuracy_s": {
            accuracy_label(target): time_to_accuracy(ckpt.history, target) for target in ACCURACY_TARGETS
        },
        "history": ckpt.history,
        "resumed_from_step": result.start_step,  # > 0: the machine fields describe the last part only
        "checkpoint": {"file": Path(result.path).name, "sha256": sha256_file(result.path)},
        "data_checksum": mnist.checksum,
        "torch_version": torch.__version__,
        "cpu_model": env["cpu_model"],
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "loadavg_start": loadavg_start,
        "loadavg_end": loadavg_end,
        "host": env["host"],
        "machine_id": env["machine"].get("machine_id", ""),
        "git_commit": env["git_commit"],
        "started_utc": started_utc,
    }


def write_summary(summary: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write ``summary`` as indented JSON, atomically (a crash leaves the previous file)."""

    atomic_write_text(path, json.dumps(summary, indent=1) + "\n")
    return Path(path)


# ----------------------------------------------------------------------------- reading back

_FRACTION, _POSITIVE, _COUNT, _TEXT = (
    "a fraction in [0, 1]",
    "a positive number",
    "a positive integer",
    "text",
)
_FIELDS = {
    "recipe": _TEXT,
    "command": _TEXT,
    "steps": _COUNT,
    "batch_size": _COUNT,
    "threads": _COUNT,
    "epochs": _POSITIVE,
    "test_accuracy": _FRACTION,
    "train_seconds": _POSITIVE,
    "steps_per_second": _POSITIVE,
}


def _fits(value: Any, kind: str) -> bool:
    if kind == _TEXT:
        return isinstance(value, str) and bool(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if abs(value) > 2**53 or not math.isfinite(value):  # the size first: a 400-digit int overflows a float
        return False
    if kind == _COUNT:
        return isinstance(value, int) and value >= 1
    return 0 <= value <= 1 if kind == _FRACTION else value > 0


def load_summary(path: str | os.PathLike) -> dict[str, Any]:
    """A summary written by ``write_summary``; SummaryError naming the file and the field if not."""
    path = Path(path)
    try:
        text = read_text_limited(path, "a training summary")
    except FileNotFoundError:
        raise SummaryError(f"{path}: no such training summary (deepmnist train writes one)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SummaryError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None
    try:
        summary = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, an int of over 4,300 digits, deep nesting
        raise SummaryError(f"{path}: not JSON ({e})") from None
    if not isinstance(summary, dict) or summary.get("format") != FORMAT:
        found = summary.get("format") if isinstance(summary, dict) else type(summary).__name__
        raise SummaryError(
            f"{path}: not a deepmnist training summary (format {found!r}, expected {FORMAT!r})"
        )
    for name, kind in _FIELDS.items():
        if not _fits(summary.get(name), kind):
            raise SummaryError(f"{path}: {name} {shown(summary.get(name))} is not {kind}")
    if any(ord(c) < 32 or ord(c) == 127 for c in summary["recipe"]):  # a name: one table cell
        raise SummaryError(f"{path}: recipe {summary['recipe']!r} holds a control character")
    times = summary.get("time_to_accuracy_s")
    if not isinstance(times, dict) or not all(v is None or _fits(v, _POSITIVE) for v in times.values()):
        raise SummaryError(f"{path}: time_to_accuracy_s {times!r} is not a mapping to seconds or null")
    for name in ("loadavg_start", "loadavg_end"):
        value = summary.get(name)
        loads = isinstance(value, list) and value and all(_fits(v, _POSITIVE) or v == 0 for v in value)
        if value is not None and not loads:
            raise SummaryError(f"{path}: {name} {value!r} is not a list of load averages or null")
    return summary


# ----------------------------------------------------------------------------- the table

TITLE = "training runs (deepmnist train; training time only, test-set evaluations excluded)"


def _seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f} s"


def _load(summary: Mapping[str, Any]) -> str:
    start, end = summary.get("loadavg_start"), summary.get("loadavg_end")
    return " -> ".join("n/a" if value is None else f"{value[0]:.2f}" for value in (start, end))


def summary_table(summaries: Sequence[Mapping[str, Any]]) -> Any:
    """One line per summary: a ``bench.report.cells.Table`` (the text and the HTML report draw it)."""

    cells: dict[str, list[str]] = {
        "recipe": [s["recipe"] for s in summaries],
        "steps x batch": [
            f"{s['steps']:,} x {s['batch_size']} ({s['epochs']:.3g} epochs)" for s in summaries
        ],
        "test accuracy": [f"{s['test_accuracy'] * 100:.2f}%" for s in summaries],
        "training time": [
            f"{s['train_seconds']:.1f} s ({s['steps_per_second']:.1f} steps/s)" for s in summaries
        ],
    }
    for target in ACCURACY_TARGETS:
        label = accuracy_label(target)
        cells[f"time to {label}"] = [_seconds(s["time_to_accuracy_s"].get(label)) for s in summaries]
    cells["threads"] = [str(s["threads"]) for s in summaries]
    cells["load (1 min) before -> after"] = [_load(s) for s in summaries]
    return Table(TITLE, cells, frozenset(set(cells) - {"recipe"}))


def _one_line(text: str) -> str:
    """``text`` with its control characters escaped (``\\n``, ``\\t``, ``\\x1b``), so a command
    whose arguments hold a newline stays one line."""
    return "".join(c if ord(c) >= 32 and ord(c) != 127 else repr(c)[1:-1] for c in text)


def render(paths: Sequence[str], markdown: bool = False) -> str:
    """The table of the summaries at ``paths``, then one line per run: its file, command, commit,
    torch, threads x CPU and start time."""

    summaries = [load_summary(path) for path in paths]
    code = markdown_code if markdown else str
    text = markdown_text if markdown else str
    lines = [summary_table(summaries).text(markdown), ""]
    for path, s in zip(paths, summaries, strict=True):
        lines.append(
            f"- {code(s['recipe'])} ({code(path)}): {code(_one_line(s['command']))}; commit "
            + text(
                f"{s.get('git_commit') or 'unknown'}, torch {s.get('torch_version') or '?'}, {s['threads']} "
                f"thread(s) of {s.get('cpu_model') or 'an unknown CPU'} ({s.get('cpu_count') or '?'} cores), "
                f"started {s.get('started_utc') or '?'}"
            )
        )
    return "\n".join(lines) + "\n"


def cmd_train_summary(args: argparse.Namespace) -> int:
    print(render(args.summaries, markdown=args.markdown), end="")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train-summary",
        help="print training summaries (written by deepmnist train) as one table",
        description="One line per training summary (deepmnist train writes CHECKPOINT.summary.json, "
        "and a copy with --summary PATH): steps x batch, test accuracy, training time and steps/s, "
        "time to 99.0%% and 99.2%%, threads and the load averages before and after, then each run's "
        "command, commit and machine.",
    )
    p.add_argument("summaries", metavar="SUMMARY.json", nargs="+", help="training summaries, in table order")
    p.add_argument("--markdown", action="store_true", help="a Markdown table instead of plain text")
    p.set_defaults(func=cmd_train_summary)
    return p
