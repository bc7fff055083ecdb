#!/usr/bin/env bash
# The runs behind BENCHMARKS.md, one after another (2-core CPU: one torch job at a time).
# Each run resumes where it stopped when rerun; results land in benchmarks/results/<run-name>/.
# Usage: bash benchmarks/run_all.sh [DATA_DIR]   (default ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
out=${BENCH_OUT:-benchmarks/results}
run() {  # run-name, then bench flags
  local name=$1; shift
  .venv/bin/polyprag bench --data-dir "$data" --out "$out/$name" "$@"
}
run hotpotqa-n100-smollm2-bench --dataset hotpotqa --n 100
run 2wiki-n100-smollm2-bench --dataset 2wiki --n 100
run popqa-n50-smollm2-bench --dataset popqa --n 50
run cwq-n50-smollm2-bench --dataset cwq --n 50
run hotpotqa-n100-gemma3-bench --dataset hotpotqa --n 100 --model gemma3-270m
