#!/usr/bin/env bash
# BAM's setting (BENCHMARKS.md, Distillation): one all-mpnet-base-v2 teacher per built-in task
# (Clark et al. 2019, single-task teachers), then MiniLM students of the three, `mtcli compare`d
# with MiniLM trained alone and with the students of the multitask teacher.
#
#   nohup nice -n 19 bash bench/bam.sh > bam.log 2>&1 &      # run it again to go on where it stopped
#   OUT=/tmp/bam EXPORTS=/tmp/bam/export TEACHER_OPTIONS="--limit 32 --max-steps 1 --epochs 1" SEEDS=0 \
#     ALONE= MULTITASK= bash bench/bam.sh --limit 32 --max-steps 1 --epochs 1   # a smoke test: ~12 min on 2 cores
#
# Each teacher trains the default recipe on its task alone (runs/bam/teacher-<task>, last/ every
# 50 steps: a second call resumes a run that was cut off), is exported once (export-bam-<task>,
# int8 too); each seed's student takes the three exports (--teacher a,b,c: each labels the task it
# knows) and goes to runs/bam/student-s<seed>; options after the script's name go to the students. On 2 CPU cores the three teachers take about as
# long as one multitask MPNet run (~5 h); on a GPU, minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
mtcli=${MTCLI:-.venv/bin/mtcli}
out=${OUT:-runs/bam}
seeds=${SEEDS:-0 1 2}
alone=${ALONE-bench/results/default-full}
prefix=${EXPORTS:-export-bam}                   # the teachers' exports: $prefix-<task>
teacher_options=${TEACHER_OPTIONS:-}             # e.g. "--limit 64 --max-steps 2" for a smoke test
multitask=${MULTITASK-bench/results/distill-minilm/student-s0 bench/results/distill-minilm/student-s1 bench/results/distill-minilm/student-s2}

finished() { [ -f "$1/curves.png" ]; }         # a run draws its curves last

train() {   # run folder, then train options for a new run
  local run=$1; shift
  if finished "$run"; then
    return
  elif [ -f "$run/config.json" ]; then
    "$mtcli" train --resume "$run"               # from last/, or from step 0 if cut off before it
  else
    "$mtcli" train --save-every 50 --out "$(dirname "$run")" --name "$(basename "$run")" "$@"
  fi
}

exports=()
for task in sst para sts; do
  [ -f "$out/$task.toml" ] || "$python" bench/task_files.py --only "$task" --out "$out/$task.toml"
  # shellcheck disable=SC2086
  train "$out/teacher-$task" --model-dir all-mpnet-base-v2 --tasks "$out/$task.toml" --seed 0 $teacher_options
  [ -f "$prefix-$task/manifest.json" ] || \
    "$mtcli" export --checkpoint "$out/teacher-$task/best" --out "$prefix-$task" --quantize int8
  exports+=("$prefix-$task")
done
teachers=$(IFS=,; echo "${exports[*]}")
for seed in $seeds; do
  train "$out/student-s$seed" --teacher "$teachers" --seed "$seed" "$@"
done
"$mtcli" compare $alone $multitask $(for s in $seeds; do echo "$out/student-s$s"; done) --out "$out/compare" \
  --resamples 10000
