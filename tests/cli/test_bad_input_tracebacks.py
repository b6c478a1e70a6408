"""Bad input that once ended in a traceback (issue 22, the second sweep), table-driven with the
runner of tests/cli/test_bad_input.py: each case gives the command, the exit code, a phrase the message
must contain and the files that must be unchanged; no case may print a traceback.

- a run's JSON sidecar with a field of the wrong type, read by compare, history, report and plot
  (one reader: ``bench.results.sidecar``);
- integers written in other digits than ASCII (``--batch-sizes ²``), and of 400 digits;
- a corrupt ``.gz`` in ``data``/``evaluate --data-dir`` and ``predict``;
- a checkpoint whose ``test_accuracy`` is text; ``bench --max-rounds 0``;
- Ctrl-C while a command starts (a real process sent SIGINT), and bad paths to ``deepmnist demo``'s
  server (a real server on a free port).
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.paths import REPO_ROOT
from tests.cli.test_bad_input import BENCH, Case, _nan_onnx, _tiny_checkpoint, check_case

# two committed runs of one machine with a fingerprint and durations_s in their sidecars (history
# needs two); RUN has few rows
RUN = REPO_ROOT / "results" / "20261202T071937Z-vm-selfcheck.csv"
OTHER = REPO_ROOT / "results" / "20261202T044215Z-vm-streams.csv"
NUL_ID = "5af08b6b599d\x00x"


def _wrong_memory(sidecar: dict) -> None:
    sidecar["environment"]["machine"]["memory_gib"] = "lots"


def _wrong_isa(sidecar: dict) -> None:
    sidecar["environment"]["machine"]["isa"] = 5


def _wrong_groups(sidecar: dict) -> None:
    sidecar["durations_s"]["groups"] = [1]


def _no_cases(sidecar: dict) -> None:
    del sidecar["durations_s"]["groups"][0]["cases"]


def _nul_machine_id(sidecar: dict) -> None:
    sidecar["environment"]["machine"]["machine_id"] = NUL_ID


def _superscript_cpu_count(sidecar: dict) -> None:  # a run without a fingerprint: derived from environment
    del sidecar["environment"]["machine"]
    sidecar["environment"]["cpu_count"] = "²"


SIDECARS = {  # place name -> (change, the field and what the message says of it)
    "sc_memory": (
        _wrong_memory,
        "environment.machine.memory_gib is 'lots'; expected a positive number or null",
    ),
    "sc_isa": (_wrong_isa, "environment.machine.isa is 5; expected a list of text"),
    "sc_groups": (_wrong_groups, "durations_s.groups[0] is 1; expected an object"),
    "sc_cases": (_no_cases, "durations_s.groups[0].cases is missing; expected an integer >= 0"),
    "sc_nul": (_nul_machine_id, "environment.machine.machine_id is '5af08b6b599d\\x00x'; expected an id"),
    "sc_cpu_count": (
        _superscript_cpu_count,
        "environment.cpu_count is '²'; expected an integer >= 0 or ASCII",
    ),
}


def _corrupt_gzip(data: bytes, how: str) -> bytes:
    packed = bytearray(gzip.compress(data))
    if how == "zlib":  # a first deflate block of type 3, which does not exist: zlib.error
        packed[10:40] = b"\xff" * 30
    elif how == "truncated":  # EOFError
        del packed[len(packed) // 2 :]
    elif how == "crc":  # gzip.BadGzipFile
        packed[-8:-4] = bytes(b ^ 0xFF for b in packed[-8:-4])
    return bytes(packed)


@pytest.fixture(scope="module")
def places(tmp_path_factory, mnist) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("tracebacks")
    p: dict[str, Path] = {"tmp": tmp}
    for name, (change, _) in SIDECARS.items():  # a folder with both runs' CSVs and edited sidecars
        folder = p[name] = tmp / name
        folder.mkdir()
        for run in (RUN, OTHER):
            shutil.copyfile(run, folder / run.name)
            sidecar = json.loads(run.with_suffix(".json").read_text())
            change(sidecar)
            (folder / run.name).with_suffix(".json").write_text(json.dumps(sidecar))
    # training summaries with a 400-digit and a 5,000-digit (over Python's int() limit) steps
    summary = json.loads(sorted((REPO_ROOT / "results").glob("training-*.json"))[0].read_text())
    for name, digits in (("steps_400", 400), ("steps_5000", 5000)):
        p[name] = tmp / f"{name}.json"
        text = json.dumps({**summary, "steps": 0}).replace('"steps": 0', f'"steps": 1{"0" * (digits - 1)}')
        p[name].write_text(text)
    # MNIST folders whose test images are a damaged .gz (the rest: the real files, linked)
    cache = Path(mnist.source)
    images = (cache / "t10k-images-idx3-ubyte").read_bytes()
    for how in ("zlib", "truncated", "crc"):
        folder = p[f"gz_{how}"] = tmp / f"gz-{how}"
        folder.mkdir()
        for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-labels-idx1-ubyte"):
            (folder / name).symlink_to(cache / name)
        (folder / "t10k-images-idx3-ubyte.gz").write_bytes(_corrupt_gzip(images, how))
    p["onnx"] = _nan_onnx(tmp / "model.onnx")  # predict reads every image before it runs the model
    p["acc_text"] = _tiny_checkpoint(tmp / "acc-text.safetensors", mnist, step=3, test_accuracy="high")
    return p


SIDECAR_CASES = [
    Case(f"{command}-{name.removeprefix('sc_')}",
         line.format(run=f"{{{name}}}/{RUN.name}", other=f"{{{name}}}/{OTHER.name}", tmp="{tmp}", name=name),
         2, f"{RUN.stem}.json: {phrase}", (name,))
    for name, (_, phrase) in SIDECARS.items()
    for command, line in (
        ("compare", "compare {run}"),
        ("compare-gate", f"compare {OTHER} {{run}} --fail-slower 10"),
        ("history", "history {run} {other} -o {tmp}/history-{name}"),  # two runs of the (damaged) machine
        ("report", "report {run} {other} -o {tmp}/report-{name}"),
        ("plot", "plot {run} --out {tmp}/plot-{name}"),
    )
]  # fmt: skip

NUMBERS = [
    Case("train-summary-steps-400-digits", "train-summary {steps_400}", 2, "steps 1000000000000000000000000"),
    Case("train-summary-steps-5000-digits", "train-summary {steps_5000}", 2, "steps_5000.json: not JSON"),
    Case("history-batch-superscript", f"history {OTHER} {RUN} -o {{tmp}}/h --batch-sizes ²", 2,
         "'²' is neither a batch size (an integer >= 1) nor 'best'"),
    Case("history-batch-arabic-indic", f"history {OTHER} {RUN} -o {{tmp}}/h --batch-sizes ١", 2, "'١' is neither a batch size"),
    Case("history-batch-zero", f"history {OTHER} {RUN} -o {{tmp}}/h --batch-sizes 0", 2, "'0' is neither a batch size"),
    Case("compare-batch-superscript", f"compare {RUN} --batch-sizes ²", 2, "'²' is not an integer"),
    Case("compare-batch-fullwidth", f"compare {RUN} --batch-sizes １", 2, "'１' is not an integer"),
    Case("portability-batch-superscript", "portability --batch-sizes ² --no-progress", 2, "'²' is not an integer"),
    Case("bench-batch-superscript", f"bench {BENCH} --results-dir {{tmp}}/r --batch-sizes ²", 2,
         "invalid comma-separated int value: '²'"),
    Case("bench-batch-arabic-indic", f"bench {BENCH} --results-dir {{tmp}}/r --batch-sizes ١", 2,
         "invalid comma-separated int value: '١'"),
    Case("bench-batch-400-digits", f"bench {BENCH} --results-dir {{tmp}}/r --batch-sizes 1{'0' * 399}", 2,
         f"--batch-sizes 1{'0' * 49}... (400 characters): must be at most"),
    Case("bench-rounds-superscript", f"bench {BENCH} --results-dir {{tmp}}/r --max-rounds ²", 2,
         "invalid int value: '²'"),
    # every other integer option reads ASCII digits only (int() alone takes Arabic-Indic and fullwidth)
    Case("train-steps-arabic-indic", "train --steps ١٢ --out {tmp}/t.safetensors", 2, "invalid int value: '١٢'"),
    Case("train-seed-fullwidth", "train --seed １ --out {tmp}/t.safetensors", 2, "invalid int value: '１'"),
    Case("export-opset-fullwidth", "export --no-progress --opset １８ --out {tmp}/e-opset", 2,
         "invalid int value: '１８'"),
    Case("portability-threads-arabic-indic", "portability --threads ١ --no-progress", 2, "invalid int value: '١'"),
    Case("portability-repeats-fullwidth", "portability --repeats ２ --no-progress", 2, "invalid int value: '２'"),
    Case("portability-images-superscript", "portability --images ² --no-progress", 2, "invalid int value: '²'"),
    Case("demo-port-fullwidth", "demo --port ８０００", 2, "invalid int value: '８０００'"),
]  # fmt: skip

GZIP = [
    Case(f"{command.split()[0]}-gz-{how}", f"{command} {{gz_{how}}}{rest}", 2,
         f"gz-{how}/t10k-images-idx3-ubyte.gz: corrupt gzip data")
    for how in ("zlib", "truncated", "crc")
    for command, rest in (("data --data-dir", ""), ("evaluate --data-dir", " {good}"))
] + [
    Case("predict-gz-zlib", "predict {onnx} {gz_zlib}/t10k-images-idx3-ubyte.gz", 2,
         "t10k-images-idx3-ubyte.gz: corrupt gzip data"),
    Case("predict-gz-truncated", "predict {onnx} {gz_truncated}/t10k-images-idx3-ubyte.gz", 2,
         "t10k-images-idx3-ubyte.gz: corrupt gzip data"),
]  # fmt: skip

CHECKPOINT = [
    Case("export-accuracy-text", "export --no-progress --checkpoint {acc_text} --out {tmp}/e-text", 2,
         "acc-text.safetensors: damaged checkpoint metadata (test_accuracy 'high' is not a fraction", ("acc_text",)),
    Case("evaluate-accuracy-text", "evaluate {acc_text}", 2, "test_accuracy 'high' is not a fraction", ("acc_text",)),
]  # fmt: skip

ROUNDS = [
    Case("bench-max-rounds-zero", f"bench {BENCH} --results-dir {{tmp}}/r --max-rounds 0", 2,
         "--max-rounds 0: must be at least 1"),
    Case("bench-min-rounds-zero", f"bench {BENCH} --results-dir {{tmp}}/r --min-rounds 0 --max-time 0.0001", 2,
         "--min-rounds 0: must be at least 1"),
]  # fmt: skip

TABLE = [
    pytest.param(case, id=f"{group}-{case.id}")
    for group, cases in (
        ("sidecar", SIDECAR_CASES),
        ("numbers", NUMBERS),
        ("gzip", GZIP),
        ("checkpoint", CHECKPOINT),
        ("rounds", ROUNDS),
    )
    for case in cases
]


@pytest.mark.parametrize("case", TABLE)
def test_bad_input(case: Case, places: dict[str, Path], trained_checkpoint, capsys) -> None:
    places = {**places, "good": Path(trained_checkpoint)}
    message = check_case(case, places, capsys)
    said = [line for line in message.strip().splitlines() if not line.startswith(("usage:", " "))]
    assert len(said) == 1, message  # one line (after argparse's usage, for its own errors)
    assert not any(places["tmp"].glob("r/*.csv"))  # refused before anything was measured


def test_every_committed_sidecar_fits_the_schema() -> None:
    from bench.results.sidecar import read_sidecar

    sidecars = [p for p in (REPO_ROOT / "results").glob("*.json") if p.with_suffix(".csv").is_file()]
    assert len(sidecars) >= 5
    for path in sidecars:
        assert read_sidecar(path) is not None


# ----------------------------------------------------------------------------- real processes


def _command() -> list[str]:
    """The ``deepmnist`` console script of this environment, else ``python -m bench``."""
    script = Path(sys.executable).with_name("deepmnist")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bench"]


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}


def _loading_torch(pid: int) -> bool:
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.parametrize("entry", ["console-script", "module"])
def test_ctrl_c_while_starting_exits_130_without_a_traceback(entry: str) -> None:
    """SIGINT while the parser imports torch (libtorch is mapped, the import is still running):
    one line and exit 130, not a KeyboardInterrupt traceback."""
    command = _command() if entry == "console-script" else [sys.executable, "-m", "bench"]
    proc = subprocess.Popen([*command, "demo", "--port", "0"], env=_environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _loading_torch(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "Traceback" not in err, err
    assert proc.returncode == 130, err
    assert err.strip() == "deepmnist: interrupted", err
    assert "demo:" not in out  # it was still starting


BAD_PATHS = [  # path -> the status the server must answer
    ("/app/%00", 404),
    ("/app/a%00b.html", 404),
    ("/models/%00", 404),
    ("/app/" + "a" * 10_000, 404),
    ("/app/" + "a/" * 5_000, 404),
    ("/ort/" + "x" * 300 + ".wasm", 404),
    ("/app/../../../etc/passwd", 404),
    ("/app/", 200),
]


def test_demo_server_answers_bad_paths_without_a_traceback(exported) -> None:
    proc = subprocess.Popen([*_command(), "demo", "--port", "0"], env=_environment(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("demo: http://127.0.0.1:"), line + proc.stderr.read()
        port = int(re.match(r"demo: http://127\.0\.0\.1:(\d+)/", line).group(1))
        answers = {}
        for path, _ in BAD_PATHS:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("GET", path)
                answers[path[:40]] = conn.getresponse().status
            except (http.client.HTTPException, OSError) as e:  # the server dropped the request
                answers[path[:40]] = type(e).__name__
            finally:
                conn.close()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert answers == {path[:40]: status for path, status in BAD_PATHS}
    assert "Traceback" not in err and "Exception" not in err, err
    assert proc.returncode == 130 and err.strip() == "deepmnist demo: interrupted", err
