"""Which machine a run came from: a fingerprint recorded with every run, and read back from old ones.

``collect_machine()`` (called by ``bench.results.environment.collect_environment``, so it lands in the
``.json`` sidecar as ``environment.machine``) records the CPU (vendor, model name, family, model
number, stepping, cache), the ISA features that decide which kernels run (AVX2, AVX-512, VNNI, BF16,
AMX; NEON/SVE on Arm), logical CPUs, physical cores, sockets and the CPUs this process may use,
memory, the kernel, and each GPU with its driver. ``machine_id`` is the first 12 hex digits of the
SHA-256 of the stable parts (``STABLE_FIELDS``): hardware, not the hostname (``vm`` names many
machines), not the kernel or GPU driver (software: a kernel or driver update is a change a gate
should see, not a new machine).

The run's measured peaks and bandwidth complete the fingerprint: they are in the same sidecar
(``rooflines``, one per device) and ``Machine`` holds them beside the recorded parts. Two runs whose
``machine_id`` is equal but whose measured peaks differ by more than ``PEAK_TOLERANCE`` did not see
the same machine either (another tenant, a throttled host): ``compare --fail-slower`` refuses raw
times then (``differences``).

Runs written before fingerprints existed: ``machine_of_run`` derives what their sidecar (or, with no
sidecar, the CSV's own columns) says (CPU model name, CPU count, GPU name, kernel, peaks) and lists
the rest as unknown. Their ``machine_id`` is ``~`` + a hash of the CPU model name, GPU name and
kernel release: with only a model name such as ``AMD EPYC`` known, the kernel build is the one
field that tells two cloud VMs apart, so a derived id is conservative (two boots of one VM may get
two ids, never two machines one id).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from models.errors import UserError
from bench.results.sidecar import MACHINE_RECORDED, MACHINE_STABLE, read_sidecar
from bench.results.store import read_results

FINGERPRINT_VERSION = 1
# What identifies the hardware, hashed into machine_id in this order, and what a new run records
# (the sidecar's schema gives each field's type: bench.results.sidecar.MACHINE_STABLE)
STABLE_FIELDS = tuple(MACHINE_STABLE)
RECORDED_FIELDS = tuple(MACHINE_RECORDED)
# /proc/cpuinfo flags that decide which kernels the runtimes pick (x86, then Arm "Features").
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "amx_fp16",
    "asimd",
    "asimddp",
    "bf16",
    "i8mm",
    "sve",
    "sve2",
)
# Short names for the one-line description, in order; a group is shown if any of its flags is.
_ISA_GROUPS = (
    ("AVX2", ("avx2",)),
    ("AVX-512", ("avx512f",)),
    ("VNNI", ("avx512_vnni", "avx_vnni")),
    ("BF16", ("avx512_bf16", "amx_bf16", "bf16")),
    ("FP16", ("avx512_fp16", "amx_fp16")),
    ("AMX", ("amx_tile",)),
    ("NEON", ("asimd",)),
    ("SVE", ("sve",)),
)
PEAK_TOLERANCE = 0.10  # measured peaks further apart than this: not the same machine for a gate


class MachineError(UserError):
    """A run whose machine cannot be read (a malformed sidecar, NaN peaks)."""


# ----------------------------------------------------------------------------- collecting


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo, plus the physical ids and core ids seen."""
    info: dict[str, str] = {}
    cores: set[tuple[str, str]] = set()
    sockets: set[str] = set()
    physical = core = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if not key:  # blank line: end of one processor
                    if core:
                        cores.add((physical, core))
                    physical = core = ""
                    continue
                if key == "physical id":
                    physical = value
                    sockets.add(value)
                elif key == "core id":
                    core = value
                info.setdefault(key, value)
    except OSError:
        return {}
    if core:
        cores.add((physical, core))
    info["_cores"] = str(len(cores)) if cores else ""
    info["_sockets"] = str(len(sockets)) if sockets else ""
    return info


def _memory_gib() -> float | None:
    # MemTotal moves by a few MiB between kernels (reserved memory): rounded to 1 GiB for the id
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _gpus() -> tuple[list[str], str]:
    """(GPU names, driver version), from nvidia-smi, else torch's device names with no driver."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
            rows = [[cell.strip() for cell in line.split(",")] for line in out.splitlines() if line.strip()]
            if rows:
                return [r[0] for r in rows], rows[0][-1]
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import torch

        if torch.cuda.is_available():
            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], ""
    except Exception:
        pass
    return [], ""


def machine_id(record: Mapping[str, Any]) -> str:
    """12 hex digits of the SHA-256 of the record's ``STABLE_FIELDS`` (memory rounded to 1 GiB)."""
    stable = {name: record.get(name) for name in STABLE_FIELDS}
    if isinstance(stable["memory_gib"], int | float):
        stable["memory_gib"] = round(stable["memory_gib"])
    text = json.dumps(stable, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def collect_machine() -> dict[str, Any]:
    """This machine's fingerprint (``RECORDED_FIELDS``, ``machine_id``, ``fingerprint_version``).

    Never raises: what cannot be read is empty (None, "" or []).
    """
    cpu = _cpuinfo()
    flags = set((cpu.get("flags") or cpu.get("Features") or "").split())
    gpus, driver = _gpus()
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    record: dict[str, Any] = {
        "arch": platform.machine(),
        "cpu_vendor": cpu.get("vendor_id") or cpu.get("CPU implementer", ""),
        "cpu_model": cpu.get("model name") or platform.processor(),
        "cpu_family": cpu.get("cpu family") or cpu.get("CPU architecture", ""),
        "cpu_model_number": cpu.get("model") or cpu.get("CPU part", ""),
        "cpu_stepping": cpu.get("stepping") or cpu.get("CPU revision", ""),
        "cpu_cache": cpu.get("cache size", ""),
        "isa": [flag for flag in ISA_FLAGS if flag in flags],
        "logical_cpus": os.cpu_count(),
        "physical_cores": int(cpu["_cores"]) if cpu.get("_cores") else None,
        "sockets": int(cpu["_sockets"]) if cpu.get("_sockets") else None,
        "usable_cpus": usable,
        "memory_gib": _memory_gib(),
        "gpus": gpus,
        "kernel": platform.release(),
        "gpu_driver": driver,
    }
    return {"machine_id": machine_id(record), "fingerprint_version": FINGERPRINT_VERSION, **record}


# ----------------------------------------------------------------------------- reading back


@dataclass(frozen=True)
class Machine:
    """The fingerprint of the machine one run came from.

    ``record``: the recorded (or derived) fields; ``unknown``: the ``RECORDED_FIELDS`` a run written
    before fingerprints does not say; ``peaks``: device -> (float32 peak GFLOP/s, bandwidth GB/s)
    measured in that run (NaN where not measured).
    """

    machine_id: str
    record: dict[str, Any]
    peaks: dict[str, tuple[float, float]] = field(default_factory=dict)
    unknown: tuple[str, ...] = ()
    source: str = ""
    # device -> precision -> GFLOP/s, where the run measured a roof of that precision (fp16, bf16, int8)
    precision_peaks: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def derived(self) -> bool:
        return bool(self.unknown)

    def peak(self, device: str, precision: str = "fp32") -> float:
        """The measured peak of ``device`` in ``precision`` (the float32 one where none was measured
        for it; NaN where the run measured none)."""
        own = self.precision_peaks.get(device, {}).get(precision)
        return own if own is not None else self.peaks.get(device, (math.nan, math.nan))[0]

    def has_precision_peak(self, device: str, precision: str) -> bool:
        return precision == "fp32" or precision in self.precision_peaks.get(device, {})

    def describe(self) -> str:
        """One line: id, CPU, ISA, cores, memory, kernel, GPU, the measured peaks; what is unknown."""
        r = self.record
        parts = []
        cpu = r.get("cpu_model") or "CPU unknown"
        detail = ", ".join(
            f"{label} {r[key]}"
            for label, key in (
                ("family", "cpu_family"),
                ("model", "cpu_model_number"),
                ("stepping", "cpu_stepping"),
            )
            if r.get(key) not in (None, "")
        )
        parts.append(f"{cpu} ({r.get('cpu_vendor')} {detail})" if detail else cpu)
        if r.get("arch"):
            parts.append(r["arch"])
        if "isa" not in self.unknown:
            flags = set(r.get("isa") or [])
            groups = [name for name, members in _ISA_GROUPS if flags & set(members)]
            parts.append(" ".join(groups) if groups else "no AVX2/AVX-512/AMX")
        if r.get("physical_cores"):
            parts.append(f"{r['physical_cores']} cores / {r.get('logical_cpus')} threads")
        elif r.get("logical_cpus"):
            parts.append(f"{r['logical_cpus']} CPUs")
        if r.get("usable_cpus") and r.get("usable_cpus") != r.get("logical_cpus"):
            parts.append(f"{r['usable_cpus']} usable")
        if r.get("memory_gib"):
            parts.append(f"{r['memory_gib']:g} GiB")
        if r.get("kernel"):
            parts.append(f"kernel {r['kernel']}")
        gpus = r.get("gpus") or []
        if gpus:
            parts.append(", ".join(gpus) + (f" (driver {r['gpu_driver']})" if r.get("gpu_driver") else ""))
        elif "gpus" not in self.unknown:
            parts.append("no GPU")
        for device, (peak, bandwidth) in sorted(self.peaks.items()):
            others = "".join(
                f", {p} {v:,.0f}" for p, v in sorted(self.precision_peaks.get(device, {}).items())
            )
            parts.append(
                f"{device} peak {_num(peak, ',.0f')}{others} GFLOP/s, {_num(bandwidth, ',.1f')} GB/s"
            )
        if not self.peaks:
            parts.append("no measured peak")
        text = f"machine {self.machine_id}: " + "; ".join(parts)
        if self.unknown:
            text += f" [derived from a run without a fingerprint; unknown: {', '.join(self.unknown)}]"
        return text


def _num(value: float, fmt: str) -> str:
    return "?" if math.isnan(value) else format(value, fmt)


def kernel_of(os_string: str) -> str:
    """The kernel release inside ``platform.platform()``'s text (``Linux-6.1.0-x86_64-with-glibc2.36``
    -> ``6.1.0``; the text itself where it is not of that form)."""
    system, _, rest = os_string.partition("-")
    if system != "Linux" or not rest:
        return os_string
    release = rest
    for arch in ("-x86_64", "-aarch64", "-arm64", "-ppc64le", "-s390x", "-riscv64"):
        release = release.split(arch)[0]
    return release


# What a measured peak or bandwidth can be. A peak divides times (``--normalize peak``), so a
# denormal such as 1e-300 would scale them by 1e300 and pass any gate: below 0.01 GFLOP/s (a
# microcontroller-class core does more) or 0.01 GB/s, or above 1e8 GFLOP/s (100 PFLOP/s, a whole
# rack of today's accelerators) or 1e6 GB/s (100x today's fastest memory), it was not measured on a
# machine; the sidecar is damaged or hand-edited.
PEAK_RANGE = (0.01, 1e8)  # GFLOP/s
BANDWIDTH_RANGE = (0.01, 1e6)  # GB/s


def _finite(value: Any, what: str, where: str, bounds: tuple[float, float] = PEAK_RANGE) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise MachineError(f"{where}: {what} is {value!r}, not a number") from None
    if math.isnan(number) or number <= 0 or math.isinf(number):
        raise MachineError(f"{where}: {what} is {value!r}; expected a positive number")
    low, high = bounds
    if not low <= number <= high:
        raise MachineError(f"{where}: {what} is {value!r}; a measured one lies between {low:g} and {high:g}")
    return number


def _peaks_from_sidecar(
    rooflines: Any, where: str
) -> tuple[dict[str, tuple[float, float]], dict[str, dict[str, float]]]:
    """(device -> (float32 peak, bandwidth), device -> precision -> peak) of a sidecar's rooflines."""
    if not isinstance(rooflines, Mapping):
        raise MachineError(f"{where}: 'rooflines' is not an object")
    peaks, precision_peaks = {}, {}
    for device, roof in rooflines.items():
        if not isinstance(roof, Mapping):
            raise MachineError(f"{where}: rooflines.{device} is not an object")
        peaks[str(device)] = (
            _finite(roof.get("peak_gflops"), f"rooflines.{device}.peak_gflops", where),
            _finite(roof.get("bandwidth_gbs"), f"rooflines.{device}.bandwidth_gbs", where, BANDWIDTH_RANGE),
        )
        others = roof.get("precision_peaks") or {}
        if not isinstance(others, Mapping):
            raise MachineError(f"{where}: rooflines.{device}.precision_peaks is not an object")
        precision_peaks[str(device)] = {
            str(p): _finite(v, f"rooflines.{device}.precision_peaks.{p}", where) for p, v in others.items()
        }
    return peaks, precision_peaks


def _peaks_from_frame(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    peaks = {}
    if "peak_gflops" not in frame.columns:
        return peaks
    for device, rows in frame.groupby("device", sort=True):
        fp32 = rows[rows["precision"] == "fp32"]  # peak_gflops is the roof of the row's precision
        measured = fp32["peak_gflops"].dropna()
        if not measured.empty:
            bandwidth = fp32["bandwidth_gbs"].dropna()
            peaks[str(device)] = (
                float(measured.iloc[0]),
                float(bandwidth.iloc[0]) if not bandwidth.empty else math.nan,
            )
    return peaks


def _derived(environment: Mapping[str, Any], peaks: dict, source: str) -> Machine:
    """A ``Machine`` from the environment of a run written before fingerprints."""
    count = environment.get("cpu_count")
    gpu = environment.get("gpu_name") or ""
    os_string = str(environment.get("os", ""))
    arch = next((a for a in ("x86_64", "aarch64", "arm64") if f"-{a}" in os_string), "")
    record = {
        "arch": arch,
        "cpu_model": environment.get("cpu_model", ""),
        "logical_cpus": int(count) if str(count or "").isdigit() else None,
        "gpus": [gpu] if gpu else [],
        "kernel": kernel_of(os_string),
    }
    # an empty gpu_name says torch saw no CUDA GPU: known
    known = {"cpu_model", "kernel", "gpus"} | {name for name in ("arch", "logical_cpus") if record[name]}
    unknown = tuple(name for name in RECORDED_FIELDS if name not in known)
    text = json.dumps([record["cpu_model"], record["gpus"], record["kernel"]], separators=(",", ":"))
    return Machine("~" + hashlib.sha256(text.encode()).hexdigest()[:11], record, peaks, unknown, source)


def machine_of_run(csv_path: str | os.PathLike, frame: pd.DataFrame | None = None) -> Machine:
    """The fingerprint of the run in ``csv_path``: from its ``.json`` sidecar (the recorded one, or
    derived from the environment there), else derived from the CSV's columns (``frame``, as
    ``read_results`` gives; read if None). SidecarError (``bench.results.sidecar``) for a sidecar that cannot
    be read or holds a field of the wrong type; MachineError for JSON that is not a results sidecar,
    NaN peaks in the CSV, or a CSV that holds several hosts (a ``--merge`` of runs is not one machine)."""

    csv_path = Path(csv_path)
    sidecar = read_sidecar(csv_path)  # SidecarError (exit 2) for a field of the wrong type
    if sidecar is not None:
        where = str(csv_path.with_suffix(".json"))
        if not isinstance(sidecar.get("environment"), Mapping):
            raise MachineError(f"{where}: not a deepmnist results sidecar (no 'environment' object)")
        environment = sidecar["environment"]
        peaks, precision_peaks = _peaks_from_sidecar(sidecar.get("rooflines") or {}, where)
        recorded = environment.get("machine")
        if recorded is None:
            machine = _derived(environment, peaks, where)
        else:
            record = {name: recorded.get(name) for name in RECORDED_FIELDS}
            machine = Machine(str(recorded["machine_id"]), record, peaks, (), where)
        return dataclasses.replace(machine, precision_peaks=precision_peaks)
    frame = read_results(csv_path) if frame is None else frame
    hosts = frame[["host", "cpu_model", "gpu_name", "os"]].drop_duplicates()
    if len(hosts) > 1:
        raise MachineError(
            f"{csv_path}: rows from {len(hosts)} machines (hosts {', '.join(sorted(set(hosts['host'])))}) "
            "and no sidecar; compare one run per file"
        )
    first = hosts.iloc[0] if len(hosts) else pd.Series(dtype=str)
    environment = {name: str(first.get(name, "")) for name in ("cpu_model", "gpu_name", "os")}
    for device, (peak, _) in _peaks_from_frame(frame).items():
        _finite(peak, f"peak_gflops of device {device}", str(csv_path))
    return _derived(environment, _peaks_from_frame(frame), str(csv_path))


def differences(old: Machine, new: Machine, tolerance: float = PEAK_TOLERANCE) -> list[str]:
    """Why two runs' raw times are not comparable (empty: they are): another machine_id, a measured
    peak further apart than ``tolerance``, or a derived identity that no pair of peaks confirms."""
    reasons = []
    if old.machine_id != new.machine_id:
        derived = " (one derived from a run without a fingerprint)" if old.derived != new.derived else ""
        reasons.append(f"different machines ({old.machine_id} and {new.machine_id}{derived})")
    common = sorted(set(old.peaks) & set(new.peaks))
    for device in common:
        a, b = old.peak(device), new.peak(device)
        if abs(b / a - 1) > tolerance:
            reasons.append(
                f"{device} float32 peak {a:,.0f} vs {b:,.0f} GFLOP/s "
                f"({(b / a - 1) * 100:+.0f}%, more than {tolerance * 100:g}% apart)"
            )
    if not reasons and (old.derived or new.derived) and not common:
        which = [m.source for m in (old, new) if m.derived]
        reasons.append(
            f"unknown machine: {' and '.join(which)} {'has' if len(which) == 1 else 'have'} no machine "
            "fingerprint, and no measured peak confirms that both runs saw the same machine"
        )
    return reasons
