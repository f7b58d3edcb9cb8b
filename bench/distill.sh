#!/usr/bin/env bash
# Distillation's quality (BENCHMARKS.md, Distillation): MiniLM students of a teacher over seeds,
# `mtcli compare`d (intervals, paired bootstrap, Holm) with MiniLM trained alone and the teacher.
#
#   TEACHER=runs/distill/teacher-mpnet-s0 bash bench/distill.sh [train options]
#
# The teacher run is exported once (export-teacher-mpnet, int8 too); each seed's student goes
# to $OUT/student-s$SEED and is continued with --resume when it was cut off (save every 50
# steps); the first student labels the training rows, the others reuse its labels. MiniLM
# alone: bench/results/default-full (the default recipe, 3 seeds, cpu-vm), or $ALONE.
set -euo pipefail
cd "$(dirname "$0")/.."
mtcli=${MTCLI:-.venv/bin/mtcli}
teacher=${TEACHER:-runs/distill/teacher-mpnet-s0}
out=${OUT:-runs/distill}
seeds=${SEEDS:-0 1 2}
alone=${ALONE:-bench/results/default-full}
export_dir=${EXPORT:-export-teacher-mpnet}
[ -f "$export_dir/manifest.json" ] || "$mtcli" export --checkpoint "$teacher/best" --out "$export_dir" --quantize int8
for seed in $seeds; do
  run="$out/student-s$seed"
  if [ -f "$run/curves.png" ]; then
    continue                                     # finished (a run draws its curves last)
  elif [ -f "$run/config.json" ]; then
    "$mtcli" train --resume "$run"
  else
    "$mtcli" train --teacher "$export_dir" --seed "$seed" --save-every 50 --out "$out" --name "student-s$seed" "$@"
  fi
done
"$mtcli" compare "$alone" $(for s in $seeds; do echo "$out/student-s$s"; done) "$teacher" --out "$out/compare"
