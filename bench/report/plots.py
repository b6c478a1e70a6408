"""PNG charts beside a results CSV: ``deepmnist plot RESULTS.csv`` (or ``python -m bench.report.plots``) or ``write_plots(df, stem)``.

``write_plots`` draws, from the ok rows of a results frame, up to six charts (``CHARTS``) named after
a stem (the CSV path without ``.csv``), each written atomically and only when it has data:

- ``<stem>-throughput.png``: images/s against batch size (log-log), whole model, scenario
  ``batch``, compute timing; one line per runtime (x precision, ...), one panel per device.
- ``<stem>-layers.png``: the profiler's per-layer split of one whole-model call (scenario
  ``profile``) as stacked bars, with the same layers timed alone (thin bar) and the whole model
  timed alone (marker) beside each, so one sees whether the layer timings add up.
- ``<stem>-roofline.png``: GFLOP/s against arithmetic intensity (FLOP/byte) with the device's
  measured roofline, at the largest batch size; one panel per device.
- ``<stem>-memory.png``: each worker's resident memory after loading and its peak during the
  timed calls (whole model, largest batch size), and torch's CUDA peak where there is one.
- ``<stem>-single-stream.png``: the distribution of per-query latency at batch 1 (empirical CDF
  and its tail), from the samples of the JSON sidecar's ``single_stream_samples_ms``.
- ``<stem>-server.png``: p99 latency against achieved queries/s of the server scenario, the bound
  dashed (``bench.report.scenario_tables.server_chart``).

Only the object-oriented API (``Figure`` on an Agg canvas) is used, never pyplot's global state,
so it runs without a display and from any thread. Each runtime keeps one colour in every chart.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator
from PIL import Image

from bench.results.columns import NAMES
from bench.results.sidecar import read_sidecar
from bench.results.stats import min_samples
from bench.results.store import ResultsError, read_results
from models.atomic import atomic_path
from models.errors import UserError
from models.layers import LAYER_NAMES, LAYERS, MODEL, OTHER, PROFILE_SEGMENTS, TARGETS

DPI = 110  # dots per inch: 10 x 6 in -> 1100 x 660 pixels
FIGSIZE = (10.0, 6.0)  # inches
SAMPLES_KEY = "single_stream_samples_ms"  # JSON sidecar key: {"runtime/device": [ms per query, ...]}
# tab20 pairs a dark and a light shade of ten hues: the ten dark ones first, so that up to ten
# runtimes all get different hues, then the light ones (up to 20 distinct colours in all).
_TAB20 = colormaps["tab20"]
PALETTE = tuple(_TAB20(i) for i in range(0, 20, 2)) + tuple(_TAB20(i) for i in range(1, 20, 2))
OTHER_COLOUR = (0.55, 0.55, 0.55, 1.0)
# one Set2 hue per layer, grey for "other"
_LAYER_COLOURS = {**dict(zip(LAYER_NAMES, colormaps["Set2"].colors, strict=False)), OTHER: (0.75, 0.75, 0.75)}
_PRECISION_STYLES = {"fp32": "-", "fp16": "--", "bf16": "-.", "int8": ":"}
# roofline points: the whole model and each layer with FLOP (pools have none, so no GFLOP/s)
_TARGET_MARKERS = {
    MODEL: "*",
    **dict(zip((s.name for s in LAYERS if s.flops), ("o", "s", "^", "v", "D", "P", "h"), strict=False)),
}
_PERCENTILES = (50.0, 90.0, 99.0, 99.9)
_PERCENTILE_MARKERS = ("o", "s", "^", "D")
_DEVICE_ORDER = {"cpu": 0, "cuda": 1}
# What one line / bar / point stands for: everything but the batch size and the target.
_SERIES = ("host", "runtime", "device", "precision", "execution_provider", "threads", "timing")
_MAX_STEP_POINTS = 3000  # a CDF with more samples is drawn from this many (plus the slowest 1000)
_FONT = 8  # points, for legends and annotations


class PlotError(UserError):
    """Nothing to plot, or a sidecar that cannot be read; the message names the file."""


# ----------------------------------------------------------------------------- input


def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The ok rows of a results frame (``read_results``: a CSV of an older schema has its missing
    columns filled in there), of a positive batch size."""
    missing = [name for name in NAMES if name not in df.columns]
    if missing:
        raise ResultsError(f"results frame: missing column(s) {', '.join(missing)}")
    frame = df[(df["status"] == "ok") & (df["batch_size"] > 0)]
    return frame.astype({"threads": "int64", "batch_size": "int64"}).reset_index(drop=True)


def registered_runtimes() -> tuple[str, ...]:
    """The runtime registry's names, in its order: the only list of runtimes (bench.runtimes)."""
    from bench.runtimes import RUNTIMES  # imports torch, so only once a chart is drawn

    return tuple(RUNTIMES)


def runtime_order(runtimes: Iterable[str], registry: Sequence[str] | None = None) -> list[str]:
    """``runtimes`` once each: registered ones in registry order, then the others (old CSVs) sorted."""
    registry = registered_runtimes() if registry is None else tuple(registry)
    rank = {name: i for i, name in enumerate(registry)}
    return sorted(set(runtimes), key=lambda name: (rank.get(name, len(rank)), name))


def runtime_colours(
    runtimes: Iterable[str], registry: Sequence[str] | None = None
) -> dict[str, tuple[float, float, float, float]]:
    """One colour per runtime, so a runtime looks the same in every run and chart: a registered
    runtime always takes the PALETTE slot of its place in the registry; others (sorted) take the
    slots no registered runtime holds, then those of registered runtimes absent here; past 20,
    colours repeat. The dict is in ``runtime_order``: the charts' legends follow it."""
    registry = registered_runtimes() if registry is None else tuple(registry)
    present = set(runtimes)
    slot = {name: i for i, name in enumerate(registry)}
    colours = {name: PALETTE[slot[name] % len(PALETTE)] for name in registry if name in present}
    free = list(PALETTE[len(registry) :])
    free += [PALETTE[i] for i, name in enumerate(registry[: len(PALETTE)]) if name not in present]
    for i, name in enumerate(sorted(present - set(registry))):
        colours[name] = free[i] if i < len(free) else PALETTE[i % len(PALETTE)]
    return colours


def _sample_runtime(label: str) -> tuple[str, str]:
    """A samples label -> (runtime, device): ``"onnxruntime/cpu"``, ``"torch-eager/cuda/end_to_end"``."""
    parts = label.split("/")
    return parts[0], parts[1] if len(parts) > 1 else ""


def _finite_positive(series: pd.Series) -> pd.Series:
    return series.notna() & np.isfinite(series) & (series > 0)


# ----------------------------------------------------------------------------- labels and titles


def _varying(frame: pd.DataFrame) -> set[str]:
    return {name for name in _SERIES if frame[name].nunique() > 1}


def _series_label(key: Mapping[str, object], varying: set[str]) -> str:
    """Runtime, plus what tells series apart: precision (unless fp32), EP, threads, timing, host."""
    parts = [str(key["runtime"])]
    if key["precision"] != "fp32" and str(key["precision"]) not in str(key["runtime"]):  # not int8 twice
        parts.append(str(key["precision"]))
    if "execution_provider" in varying and key["execution_provider"]:
        parts.append(str(key["execution_provider"]).removesuffix("ExecutionProvider"))
    if "threads" in varying:
        parts.append(f"{key['threads']} threads")
    if key["timing"] != "compute":
        parts.append(str(key["timing"]).replace("_", "-"))
    if "host" in varying:
        parts.append(f"@{key['host']}")
    return " ".join(parts)


def _unique(values: Iterable[object]) -> list[str]:
    return sorted({str(v) for v in values if isinstance(v, str) and v})


def where_text(frame: pd.DataFrame) -> str:
    """``host vm · CPU AMD EPYC · GPU NVIDIA H200`` for the hosts and devices in ``frame``."""
    parts = []
    if hosts := _unique(frame["host"]):
        parts.append(f"host {', '.join(hosts)}")
    if cpus := _unique(frame["cpu_model"]):
        parts.append(f"CPU {', '.join(cpus)}")
    if gpus := _unique(frame.loc[frame["device"] != "cpu", "gpu_name"]):
        parts.append(f"GPU {', '.join(gpus)}")
    return " · ".join(parts)


def _device_title(frame: pd.DataFrame, device: str) -> str:
    rows = frame[frame["device"] == device]
    names = _unique(rows["cpu_model"] if device == "cpu" else rows["gpu_name"])
    return f"{device}: {', '.join(names)}" if names else device


def _devices(frame: pd.DataFrame) -> list[str]:
    return sorted(frame["device"].unique(), key=lambda d: (_DEVICE_ORDER.get(d, 9), d))


def _sizes(values: Iterable[int]) -> str:
    """``batch size 64`` or ``batch sizes 1, 64, 256``."""
    sizes = sorted(set(values))
    return f"batch size{'s' if len(sizes) > 1 else ''} {', '.join(str(b) for b in sizes)}"


def _text_colour(colour: Sequence[float]) -> tuple[float, float, float]:
    """The colour darkened by 35%: tab20's light shades are too pale for text on white."""
    return tuple(0.65 * c for c in colour[:3])


def new_figure(height: float = FIGSIZE[1]) -> Figure:
    fig = Figure(figsize=(FIGSIZE[0], height), dpi=DPI, layout="constrained", facecolor="white")
    FigureCanvasAgg(fig)  # the Agg canvas: no display, no pyplot
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Render ``fig`` and write it as a 256-colour PNG, atomically."""
    fig.canvas.draw()  # runs the constrained layout too
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]  # the background is opaque: alpha adds nothing
    # A chart is a few dozen colours plus their anti-aliased edges: a 256-colour palette keeps them
    # and makes the file several times smaller than RGBA.
    image = Image.fromarray(rgb).quantize(
        colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    try:
        with atomic_path(path) as tmp:  # a crash leaves the old PNG or none, never half of one
            image.save(tmp, format="PNG", dpi=(DPI, DPI))
    except OSError as e:
        raise PlotError(f"{path}: cannot write the chart ({e.strerror or e})") from e
    return path


def add_legend(ax, handles: Sequence[object], labels: Sequence[str], title: str | None = None) -> None:
    """A legend outside, right of ``ax`` (the layout makes room for it, below the figure's title)."""
    ax.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(1.02, 1.0),
        borderaxespad=0.0,
        fontsize=_FONT,
        title=title,
        title_fontsize=_FONT,
        ncols=1 if len(labels) <= 24 else 2,  # one column holds ~24 entries in 6 in
    )


# ----------------------------------------------------------------------------- 1. throughput


def throughput_chart(ok: pd.DataFrame, path: Path, colours: Mapping[str, tuple]) -> Path | None:
    fig = throughput_figure(ok, colours)
    return None if fig is None else save_figure(fig, path)


def throughput_figure(ok: pd.DataFrame, colours: Mapping[str, tuple]) -> Figure | None:
    """The throughput chart (None without data); its legend lists the runtimes in registry order."""
    data = ok[(ok["target"] == "model") & (ok["scenario"] == "batch") & (ok["timing"] == "compute")]
    data = data[_finite_positive(data["throughput_ips"])]
    if data.empty:
        return None
    devices = _devices(data)
    fig = new_figure()
    axes = fig.subplots(1, len(devices), squeeze=False)[0]
    varying = _varying(data)
    handles: dict[str, Line2D] = {}
    runtime_of: dict[str, str] = {}
    for ax, device in zip(axes, devices, strict=True):
        rows = data[data["device"] == device]
        for key, series in rows.groupby(list(_SERIES), sort=True, dropna=False):
            key = dict(zip(_SERIES, key, strict=True))
            points = series.groupby("batch_size")["throughput_ips"].median()  # one point per batch size
            label = _series_label(key, varying)
            runtime_of[label] = str(key["runtime"])
            (line,) = ax.plot(
                points.index,
                points.to_numpy(),
                color=colours.get(key["runtime"], OTHER_COLOUR),
                linestyle=_PRECISION_STYLES.get(str(key["precision"]), (0, (1, 2))),
                marker="o",
                markersize=4,
                linewidth=1.5,
            )
            handles.setdefault(label, line)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        sizes = sorted(rows["batch_size"].unique())
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.xaxis.set_minor_locator(NullLocator())
        if len(sizes) == 1:  # a lone batch size: give the point some room
            ax.set_xlim(sizes[0] / 2, sizes[0] * 2)
        ax.set_title(_device_title(ok, device), fontsize=9)
        ax.set_xlabel("batch size (images per call)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("throughput (images/s, log)")
    rank = {name: i for i, name in enumerate(colours)}  # registry order (runtime_colours keeps it)
    labels = sorted(handles, key=lambda label: (rank.get(runtime_of[label], len(rank)), label))
    add_legend(axes[-1], [handles[label] for label in labels], labels)
    fig.suptitle(
        f"Deep MNIST whole-model throughput (compute timing): {where_text(data)}\n{_sizes(data['batch_size'])}",
        fontsize=10,
    )
    return fig


# ----------------------------------------------------------------------------- 2. layers


def layers_chart(ok: pd.DataFrame, path: Path, colours: Mapping[str, tuple]) -> Path | None:
    profile = ok[(ok["scenario"] == "profile") & ok["latency_ms_median"].notna()]
    profile = profile[np.isfinite(profile["latency_ms_median"]) & (profile["latency_ms_median"] >= 0)]
    if profile.empty:
        return None
    profile = profile[profile["target"] != "model"]  # the profiler's total: the sum of the segments
    profile = profile.assign(segment=profile["target"].where(profile["target"].isin(PROFILE_SEGMENTS), OTHER))
    alone = ok[(ok["scenario"] == "batch") & (ok["timing"] == "compute")]
    alone = alone[_finite_positive(alone["latency_ms_median"])]
    varying = _varying(profile)
    keys = [*_SERIES, "batch_size"]
    bars = []  # (device, label, runtime, profiled ms per segment, alone ms per layer, model ms)
    for key, rows in profile.groupby(keys, sort=True, dropna=False):
        key = dict(zip(keys, key, strict=True))
        split = rows.groupby("segment")["latency_ms_median"].sum().reindex(PROFILE_SEGMENTS).fillna(0.0)
        if split.sum() <= 0:
            continue
        same = alone
        for name in ("host", "runtime", "device", "precision", "execution_provider", "threads", "batch_size"):
            same = same[same[name] == key[name]]
        layers = same[same["target"].isin(LAYER_NAMES)].groupby("target")["latency_ms_median"].median()
        model = same.loc[same["target"] == "model", "latency_ms_median"].median()  # NaN if none
        label = _series_label(key, varying)
        if profile["batch_size"].nunique() > 1:
            label += f", batch {key['batch_size']}"
        bars.append((key["device"], label, key["runtime"], split, layers.reindex(LAYER_NAMES), model))
    if not bars:
        return None
    devices = _devices(pd.DataFrame({"device": [b[0] for b in bars]}))
    counts = [sum(b[0] == d for b in bars) for d in devices]
    # 0.45 in per bar pair, plus room for the titles; at least the usual 6 in
    fig = new_figure(height=max(FIGSIZE[1], 0.45 * sum(counts) + 1.2 * len(devices) + 1.0))
    axes = fig.subplots(len(devices), 1, squeeze=False, gridspec_kw={"height_ratios": counts})[:, 0]
    for ax, device in zip(axes, devices, strict=True):
        group = sorted((b for b in bars if b[0] == device), key=lambda b: b[3].sum())  # fastest on top
        right = 0.0
        for y, (_, _, _, split, layers, model) in enumerate(group):
            left = 0.0
            for segment, ms in split.items():
                ax.barh(y - 0.12, ms, left=left, height=0.5, color=_LAYER_COLOURS[segment], edgecolor="white")
                left += ms
            if pd.notna(model):
                ax.plot([model], [y - 0.12], marker="D", color="black", markersize=5, linestyle="none")
            end = max(left, model) if pd.notna(model) else left  # the label goes right of the marker
            ax.text(end, y - 0.12, f"  {left:.3g} ms", va="center", fontsize=_FONT - 1)
            total_alone = 0.0
            for layer, ms in layers.items():
                if pd.notna(ms):
                    ax.barh(
                        y + 0.3, ms, left=total_alone, height=0.18, color=_LAYER_COLOURS[layer], alpha=0.7
                    )
                    total_alone += ms
            notes = []
            if total_alone > 0:
                missing = int(layers.isna().sum())
                count = f" ({len(LAYER_NAMES) - missing}/{len(LAYER_NAMES)} layers)" if missing else ""
                notes.append(f"alone {total_alone:.3g}{count}")
            if pd.notna(model):
                notes.append(f"model {model:.3g}")
            if notes:
                ax.text(total_alone, y + 0.3, "  " + ", ".join(notes), va="center", fontsize=_FONT - 2)
            right = max(right, left, total_alone, model if pd.notna(model) else 0.0)
        ax.set_yticks(range(len(group)), [b[1] for b in group], fontsize=_FONT)
        for tick, bar in zip(ax.get_yticklabels(), group, strict=True):
            tick.set_color(_text_colour(colours.get(bar[2], OTHER_COLOUR)))  # the runtime's, as elsewhere
        ax.set_ylim(len(group) - 0.5, -0.6)  # first (fastest) bar at the top
        ax.set_xlim(0, right * 1.35)  # room for the value labels
        ax.set_title(_device_title(ok, device), fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    axes[-1].set_xlabel("ms per call (whole batch)")
    handles = [Patch(color=_LAYER_COLOURS[s], label=s) for s in PROFILE_SEGMENTS]
    handles += [
        Patch(facecolor=(0.5, 0.5, 0.5), alpha=0.7, label="thin bar: each layer\ntimed alone, stacked"),
        Line2D([], [], marker="D", color="black", linestyle="none", label="whole model\ntimed alone"),
    ]
    add_legend(axes[0], handles, [str(h.get_label()) for h in handles], title="profiler share")
    fig.suptitle(
        f"Per-layer time of one whole-model call, from the profiler: {where_text(profile)}\n"
        f"{_sizes(profile['batch_size'])}; do the layers timed alone add up?",
        fontsize=10,
    )
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- 3. roofline


def _device_constant(rows: pd.DataFrame, name: str) -> float:
    """A per-device measurement (peak GFLOP/s, GB/s): the median over the float32 rows (rows of
    another precision carry that precision's roof); NaN if not measured."""
    rows = rows[rows["precision"].fillna("fp32").isin(["fp32", ""])]
    values = rows.loc[_finite_positive(rows[name]), name]
    return float(values.median()) if len(values) else math.nan


def _precision_roofs(rows: pd.DataFrame, fp32_peak: float) -> dict[str, float]:
    """Precision -> the roof its rows were measured against, for reduced precisions whose roof was
    measured (a roof equal to the float32 peak is the fallback, not a measurement)."""
    roofs = {}
    for precision, group in rows.groupby(rows["precision"].fillna("fp32")):
        values = group.loc[_finite_positive(group["peak_gflops"]), "peak_gflops"]
        if precision not in ("fp32", "") and len(values) and not math.isclose(values.median(), fp32_peak):
            roofs[str(precision)] = float(values.median())
    return roofs


def roofline_chart(ok: pd.DataFrame, path: Path, colours: Mapping[str, tuple]) -> Path | None:
    points = ok[(ok["scenario"] == "batch") & (ok["timing"] == "compute")]
    # pools do no FLOP (gflops NaN or 0): nothing to place on a FLOP/s axis
    points = points[_finite_positive(points["gflops"]) & _finite_positive(points["arithmetic_intensity"])]
    if points.empty:
        return None
    panels = sorted(
        {(h, d) for h, d in zip(points["host"], points["device"], strict=True)},
        key=lambda p: (p[0], _DEVICE_ORDER.get(p[1], 9), p[1]),
    )
    several_hosts = points["host"].nunique() > 1
    fig = new_figure()
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    runtimes: dict[str, None] = {}
    targets: dict[str, None] = {}
    hollow = False
    largest = []
    for ax, (host, device) in zip(axes, panels, strict=True):
        rows = points[(points["host"] == host) & (points["device"] == device)]
        batch = int(rows["batch_size"].max())  # the largest batch size: the kernels' best case
        largest.append(batch)
        rows = rows[rows["batch_size"] == batch]
        measured = ok[(ok["host"] == host) & (ok["device"] == device)]
        peak = _device_constant(measured, "peak_gflops")
        bandwidth = _device_constant(measured, "bandwidth_gbs")
        x_lo, x_hi = rows["arithmetic_intensity"].min() / 4, rows["arithmetic_intensity"].max() * 4
        y_lo, y_hi = rows["gflops"].min() / 4, rows["gflops"].max() * 4
        if peak > 0 and bandwidth > 0:
            ridge = peak / bandwidth  # FLOP/byte where memory-bound turns compute-bound
            x_lo, x_hi = min(x_lo, ridge / 8), max(x_hi, ridge * 8)
            y_hi = max(y_hi, peak * 3)
            y_lo = min(y_lo, bandwidth * x_lo)
            xs = np.geomspace(x_lo, x_hi, 200)
            ax.plot(xs, np.minimum(peak, bandwidth * xs), color="black", linewidth=1.5, zorder=2)
            ax.plot([ridge], [peak], marker="o", color="black", markersize=4)
            ax.plot([ridge, ridge], [y_lo, peak], color="black", linestyle=":", linewidth=0.8)
            ax.text(ridge * 1.08, y_lo * 1.4, f"ridge {ridge:.3g} FLOP/B", rotation=90, fontsize=_FONT)
            ax.text(ridge * 1.15, peak * 1.15, f"peak {peak:,.0f} GFLOP/s", va="bottom", fontsize=_FONT)
            # just above the sloped (memory-bound) part, near its left end
            ax.text(x_lo * 1.3, bandwidth * x_lo * 2.1, f"{bandwidth:,.0f} GB/s", va="bottom", fontsize=_FONT)
        elif peak > 0:
            ax.axhline(peak, color="black", linewidth=1.5)
            ax.text(x_hi, peak * 1.15, f"peak {peak:,.0f} GFLOP/s", ha="right", fontsize=_FONT)
            y_hi = max(y_hi, peak * 3)
        elif bandwidth > 0:
            xs = np.geomspace(x_lo, x_hi, 50)
            ax.plot(xs, bandwidth * xs, color="black", linewidth=1.5)
            y_lo = min(y_lo, bandwidth * x_lo)
            y_hi = max(y_hi, bandwidth * x_hi)
        else:
            ax.text(0.02, 0.98, "roofline not measured", transform=ax.transAxes, va="top", fontsize=_FONT)
        for i, (precision, roof) in enumerate(_precision_roofs(measured, peak).items()):  # dashed
            ax.axhline(roof, color="black", linewidth=0.8, linestyle="--", zorder=1)
            x, ha = (x_lo * 1.3, "left") if i % 2 == 0 else (x_hi / 1.3, "right")  # labels apart
            ax.text(
                x, roof * 1.1, f"{precision} peak {roof:,.0f} GFLOP/s", ha=ha, va="bottom", fontsize=_FONT
            )
            y_hi = max(y_hi, roof * 3)
        for row in rows.itertuples(index=False):
            colour = colours.get(row.runtime, OTHER_COLOUR)
            filled = row.precision == "fp32"
            hollow |= not filled
            ax.scatter(
                [row.arithmetic_intensity],
                [row.gflops],
                marker=_TARGET_MARKERS.get(row.target, "X"),
                s=90 if row.target == "model" else 45,
                facecolors=[colour] if filled else "none",
                edgecolors=["black" if filled else colour],
                linewidths=0.5 if filled else 1.5,
                zorder=3,
            )
            runtimes[row.runtime] = None
            targets[row.target] = None
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(x_lo, x_hi)
        ax.set_ylim(y_lo, y_hi)
        title = _device_title(ok[ok["host"] == host], device) + f", batch {batch}"
        ax.set_title(f"{host}: {title}" if several_hosts else title, fontsize=9)
        ax.set_xlabel("arithmetic intensity (FLOP per byte moved)")
        ax.grid(True, which="both", alpha=0.25)
    axes[0].set_ylabel("GFLOP/s (log)")
    handles = [
        Line2D([], [], marker="o", linestyle="none", color=colours.get(r, OTHER_COLOUR), label=r)
        for r in runtime_order(runtimes, list(colours))
    ]
    order = [t for t in TARGETS if t in targets] + sorted(set(targets) - set(TARGETS))
    handles += [
        Line2D([], [], marker=_TARGET_MARKERS.get(t, "X"), linestyle="none", color="0.35", label=t)
        for t in order
    ]
    if hollow:
        handles.append(
            Line2D(
                [], [], marker="o", linestyle="none", markerfacecolor="none", color="0.35", label="not fp32"
            )
        )
    add_legend(
        axes[-1], handles, [str(h.get_label()) for h in handles], title="colour: runtime\nshape: target"
    )
    fig.suptitle(
        f"Roofline (compute timing, the largest {_sizes(largest)}): {where_text(points)}",
        fontsize=10,
    )
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- 4. single stream


def _clean_samples(samples: Mapping[str, Sequence[float]] | None) -> dict[str, np.ndarray]:
    """Finite, positive samples (a log axis) per label; labels left with none are dropped."""
    clean = {}
    for label, values in (samples or {}).items():
        array = np.asarray(values, dtype=float).ravel()
        array = np.sort(array[np.isfinite(array) & (array > 0)])
        if array.size:
            clean[str(label)] = array
    return clean


def percentiles(ms: np.ndarray) -> dict[float, float | None]:
    """p50, p90, p99, p99.9 of the samples; None where there are too few samples to trust
    (the rule of ``bench.results.stats.min_samples``: p99.9 needs 10,000)."""

    n = len(ms)
    values = np.percentile(ms, _PERCENTILES)
    resolved = [n >= min_samples(p) for p in _PERCENTILES]
    return {p: float(v) if ok else None for p, v, ok in zip(_PERCENTILES, values, resolved, strict=True)}


def _thin(n: int) -> np.ndarray:
    """Indices of a sorted sample to draw: all of them, or an even spread plus the slowest 1000."""
    if n <= _MAX_STEP_POINTS:
        return np.arange(n)
    spread = np.linspace(0, n - 1, _MAX_STEP_POINTS).astype(np.int64)
    return np.unique(np.concatenate([spread, np.arange(max(0, n - 1000), n)]))


def single_stream_chart(
    ok: pd.DataFrame,
    samples: Mapping[str, Sequence[float]] | None,
    path: Path,
    colours: Mapping[str, tuple],
) -> Path | None:
    clean = _clean_samples(samples)
    if not clean:
        return None
    legend_rows = math.ceil(len(clean) / 2) if len(clean) > 3 else len(clean)
    fig = new_figure(height=FIGSIZE[1] + max(0, legend_rows - 4) * 0.16)  # 0.16 in per extra legend row
    cdf_ax, tail_ax = fig.subplots(1, 2, sharex=True)
    handles, labels = [], []
    for label, ms in sorted(clean.items(), key=lambda item: float(np.median(item[1]))):
        runtime, device = _sample_runtime(label)
        colour = colours.get(runtime, OTHER_COLOUR)
        style = ":" if label.endswith("/end_to_end") else "-" if device in ("cpu", "") else "--"
        n = ms.size
        idx = _thin(n)
        below = (idx + 1) / n  # fraction of queries at most this slow
        at_least = (n - idx) / n  # fraction of queries at least this slow
        (line,) = cdf_ax.step(ms[idx], below, where="post", color=colour, linestyle=style, linewidth=1.3)
        tail_ax.step(ms[idx], at_least, where="pre", color=colour, linestyle=style, linewidth=1.3)
        values = []
        for (pct, q), marker in zip(percentiles(ms).items(), _PERCENTILE_MARKERS, strict=True):
            values.append("-" if q is None else f"{q:.3g}")
            if q is not None:
                cdf_ax.plot([q], [pct / 100], marker=marker, color=colour, markersize=4, linestyle="none")
                tail_ax.plot(
                    [q], [1 - pct / 100], marker=marker, color=colour, markersize=4, linestyle="none"
                )
        handles.append(line)
        labels.append(f"{label} (n={n}): {' / '.join(values)} ms")
    for pct in _PERCENTILES:  # the percentile levels, as dotted lines
        name = f"p{pct:g}"
        cdf_ax.axhline(pct / 100, color="0.6", linestyle=":", linewidth=0.8)
        tail_ax.axhline(1 - pct / 100, color="0.6", linestyle=":", linewidth=0.8)
        tail_ax.text(
            1.0, 1 - pct / 100, f" {name}", transform=tail_ax.get_yaxis_transform(), fontsize=_FONT - 1
        )
    cdf_ax.text(1.0, 0.5, " p50", transform=cdf_ax.get_yaxis_transform(), fontsize=_FONT - 1, va="center")
    cdf_ax.set_xscale("log")
    cdf_ax.set_ylim(0, 1.01)
    cdf_ax.set_ylabel("fraction of queries at most this slow")
    cdf_ax.set_title("empirical CDF", fontsize=9)
    smallest = min(1.0 / a.size for a in clean.values())
    tail_ax.set_yscale("log")
    tail_ax.set_ylim(min(smallest, 1e-3) / 2, 1.5)
    tail_ax.set_ylabel("fraction of queries at least this slow (log)")
    tail_ax.set_title("tail (1 - CDF)", fontsize=9)
    low = min(float(a[0]) for a in clean.values())
    high = max(float(a[-1]) for a in clean.values())
    # over a narrow range a log axis labels its minor ticks, which overlap: label 1-1.5-2-3-5-7 instead
    subs = (1.0, 2.0, 5.0) if high / low > 20 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    for ax in (cdf_ax, tail_ax):
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("latency per query (ms, log)")
        ax.grid(True, which="both", alpha=0.25)
    markers = [
        Line2D([], [], marker=m, linestyle="none", color="0.35", label=f"p{p:g}")
        for p, m in zip(_PERCENTILES, _PERCENTILE_MARKERS, strict=True)
    ]
    tail_ax.legend(
        handles=markers, loc="lower left", fontsize=_FONT - 1, title="marks", title_fontsize=_FONT - 1
    )
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=2 if len(labels) > 3 else 1,
        fontsize=_FONT - 1,
        title="runtime/device (queries): p50 / p90 / p99 / p99.9",
        title_fontsize=_FONT,
    )
    fig.suptitle(
        f"Single-stream latency (batch 1, one query after another): {where_text(ok)}".rstrip(": "),
        fontsize=10,
    )
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- 5. memory


def memory_chart(ok: pd.DataFrame, path: Path, colours: Mapping[str, tuple]) -> Path | None:
    """Horizontal bars per runtime x device: peak RSS during the timed calls (full bar), RSS after
    loading (thin bar inside) and CUDA peak (hatched), at the largest batch size of the whole model."""
    data = ok[(ok["target"] == "model") & (ok["scenario"] == "batch") & (ok["timing"] == "compute")]
    data = data[_finite_positive(data["peak_rss_mb"]) | _finite_positive(data["rss_after_load_mb"])]
    if data.empty:
        return None
    data = data[data["batch_size"] == data["batch_size"].max()]
    data = data.sort_values(["device", "peak_rss_mb"], na_position="first", kind="stable")
    fig = new_figure(height=max(3.0, 0.35 * len(data) + 1.5))
    ax = fig.subplots()
    labels = [f"{r.runtime} ({r.device})" for r in data.itertuples()]
    y = np.arange(len(data))
    colour = [colours.get(r, OTHER_COLOUR) for r in data["runtime"]]
    ax.barh(y, data["peak_rss_mb"].fillna(0), height=0.7, color=colour, label="peak RSS in the timed calls")
    ax.barh(y, data["rss_after_load_mb"].fillna(0), height=0.3, color="black", alpha=0.45,
            label="RSS after loading")  # fmt: skip
    if data["cuda_peak_allocated_mb"].notna().any():
        ax.barh(y + 0.4, data["cuda_peak_allocated_mb"].fillna(0), height=0.2, color="white",
                edgecolor="black", hatch="//", label="CUDA peak allocated (torch)")  # fmt: skip
    for yi, peak in zip(y, data["peak_rss_mb"], strict=True):
        if np.isfinite(peak):
            ax.annotate(f"{peak:,.0f}", (peak, yi), xytext=(3, 0), textcoords="offset points",
                        va="center", fontsize=_FONT)  # fmt: skip
    ax.set_yticks(y, labels, fontsize=_FONT)
    ax.set_xlabel("MiB (each runtime in its own worker process)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=_FONT)
    batch = int(data["batch_size"].iloc[0])
    fig.suptitle(
        f"Deep MNIST memory per runtime, whole model, batch {batch}: {where_text(data)}", fontsize=10
    )
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- entry points


def server_chart(ok: pd.DataFrame, path, colours) -> object | None:
    """p99 latency against achieved queries/s, one line per runtime x device, the bound dashed."""
    if not {"latency_ms_p99", "achieved_qps", "latency_bound_ms"} <= set(ok.columns):
        return None  # a file written before the server scenario existed
    data = ok[(ok["scenario"] == "server") & ok["latency_ms_p99"].notna()]
    if data.empty:
        return None
    fig = new_figure()
    ax = fig.subplots()
    for (runtime, device), line in data.sort_values("target_qps").groupby(["runtime", "device"], sort=False):
        ax.plot(line["achieved_qps"], line["latency_ms_p99"], marker="o", color=colours.get(runtime, OTHER_COLOUR),
                label=f"{runtime} ({device})")  # fmt: skip
    bound = float(data["latency_bound_ms"].iloc[0])
    ax.axhline(bound, color="black", linestyle="--", linewidth=1, label=f"bound {bound:g} ms")
    ax.set_yscale("log")
    ax.set_xlabel("achieved queries/s (Poisson arrivals, batch 1)")
    ax.set_ylabel("p99 latency, ms (scheduled arrival to result)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle(f"Deep MNIST server scenario: {where_text(data)}", fontsize=10)
    return save_figure(fig, path)


# ----------------------------------------------------------------------------- threads x streams


CHARTS = ("throughput", "layers", "roofline", "memory", "single-stream", "server")  # <stem>-<chart>.png


def write_plots(
    df: pd.DataFrame,
    out_stem: str | os.PathLike,
    samples: Mapping[str, Sequence[float]] | None = None,
    charts: Collection[str] = CHARTS,
) -> list[Path]:
    """Write the charts (of ``charts``) that have data as ``<out_stem>-<chart>.png``; return their paths.

    Only ``status == "ok"`` rows are drawn; a chart without data is not written (no empty charts).
    ``samples``: per-query single-stream latencies (ms) keyed ``"runtime/device"``.
    """
    ok = ok_rows(df)
    stem = os.fspath(out_stem)
    names = [str(r) for r in df["runtime"].dropna()] + [_sample_runtime(s)[0] for s in (samples or {})]
    colours = runtime_colours(names)  # from every row, so a runtime's colour does not depend on the chart
    draw = {
        "throughput": lambda path: throughput_chart(ok, path, colours),
        "layers": lambda path: layers_chart(ok, path, colours),
        "roofline": lambda path: roofline_chart(ok, path, colours),
        "memory": lambda path: memory_chart(ok, path, colours),
        "single-stream": lambda path: single_stream_chart(ok, samples, path, colours),
        "server": lambda path: server_chart(ok, path, colours),
    }
    written = [draw[name](Path(f"{stem}-{name}.png")) for name in CHARTS if name in charts]
    return [p for p in written if p is not None]


def read_samples(json_path: str | os.PathLike) -> dict[str, list[float]] | None:
    """``single_stream_samples_ms`` of a results JSON sidecar; None if the file or key is absent;
    SidecarError (``bench.results.sidecar``, exit 2) if it cannot be read or holds a field of the wrong type."""

    sidecar = read_sidecar(json_path)
    return None if sidecar is None else sidecar.get(SAMPLES_KEY)


def plot_results_file(csv_path: str | os.PathLike, out_stem: str | os.PathLike | None = None) -> list[Path]:
    """Charts of one results CSV (and its ``.json`` sidecar's samples), beside it unless ``out_stem``."""
    csv_path = Path(csv_path)
    df = read_results(csv_path)
    if not (df["status"] == "ok").any():
        raise PlotError(f"{csv_path}: no ok rows to plot ({len(df)} rows, all skipped or failed)")
    samples = read_samples(csv_path.with_suffix(".json"))
    paths = write_plots(df, csv_path.with_suffix("") if out_stem is None else out_stem, samples)
    if not paths:
        raise PlotError(
            f"{csv_path}: no chart has data (no whole-model compute-timing rows, profile rows, ...)"
        )
    return paths


_DESCRIPTION = (
    "Write PNG charts (throughput, per-layer split, roofline, single-stream latency, memory) beside "
    "a results CSV."
)


def _arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``deepmnist plot`` and ``python -m bench.report.plots``, declared once."""
    parser.add_argument("results", metavar="RESULTS.csv", help="a results CSV written by the benchmark")
    parser.add_argument(
        "--out", metavar="STEM", help="write STEM-<chart>.png (default: the CSV's path without .csv)"
    )


def cmd_plot(args: argparse.Namespace) -> int:
    """Exit 0 with the PNG paths printed; a bad CSV raises UserError (the CLI's exit 2)."""
    for path in plot_results_file(args.results, args.out):
        print(path)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("plot", help="the PNG charts of a results CSV", description=_DESCRIPTION)
    _arguments(p)
    p.set_defaults(func=cmd_plot)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report.plots", description=_DESCRIPTION)
    _arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_plot(args)
    except UserError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
