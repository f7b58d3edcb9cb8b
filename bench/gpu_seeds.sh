#!/usr/bin/env bash
# The default recipe (or any `mtcli train` options after the script's name) over several seeds
# at once on one GPU, bf16 autocast: each seed its own process, all sharing the device. For the
# quality comparisons in BENCHMARKS.md (`mtcli compare` reads the run folders it leaves).
#
#   MODEL=folder-or-backbone NAME=mpnet SEEDS="0 1 2" OUT=folder bash bench/gpu_seeds.sh [train options]
#
# Builds the CUDA kernels first as bench/gpu.sh does, unless they are built (without them the
# surgery runs on torch's fallback, which the log says).
set -uo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
out=${OUT:-/tmp/mtcli-seeds}
name=${NAME:-run}
seeds=${SEEDS:-0 1 2}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
mkdir -p "$out/runs"
if ! "$py" -c "from mtcli.weightings import kernel; assert kernel.backend('cuda') == 'native-cuda'" 2>/dev/null; then
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '.')
  { cmake -S . -B build/gpu -DPython_EXECUTABLE="$(command -v "$py")" -Dpybind11_DIR="$("$py" -m pybind11 --cmakedir)" \
        -DCMAKE_CUDA_ARCHITECTURES="$arch" -DCMAKE_BUILD_TYPE=Release \
      && cmake --build build/gpu -j && cmake --install build/gpu --prefix .; } >"$out/build.log" 2>&1
fi
echo "surgery kernels: $("$py" -c "from mtcli.weightings import kernel; print(kernel.backend('cuda'))")"
start=$(date +%s)
for seed in $seeds; do
  "$py" -m mtcli train --device cuda --seed "$seed" ${MODEL:+--model-dir "$MODEL"} --out "$out/runs" --name "$name-s$seed" "$@" \
    >"$out/$name-s$seed.log" 2>&1 &
done
wait
echo "seeds $seeds together in $(( $(date +%s) - start )) s"
for seed in $seeds; do echo "$name-s$seed: $(tail -1 "$out/$name-s$seed.log")"; done
