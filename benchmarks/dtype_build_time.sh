#!/usr/bin/env bash
# How long a build's training batch takes in bf16 and in fp32 on this CPU (one or four routing heads): on a CPU
# without native bf16 (no AVX512-BF16 or AMX; `polyprag.lm.models.machine()`) torch emulates bf16 matmuls.
# 10 briefs documents, 1 epoch, each build cut at 300 s; prints the builds' wall time and the last s/batch.
#   benchmarks/dtype_build_time.sh [OUT_FOLDER]        (run it alone: it times)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/dtype-build-time}
mkdir -p "$out"
head -10 benchmarks/data/briefs/docs.jsonl > "$out/docs.jsonl"
.venv/bin/python -c "import json; from polyprag.lm.models import machine; print(json.dumps(machine()))" > "$out/machine.json"
for cfg in "bfloat16 1" "bfloat16 4" "float32 1" "float32 4"; do
  set -- $cfg
  rm -rf "$out/kb-$1-$2"
  s=$(date +%s.%N)
  rc=0; timeout 300 .venv/bin/polyprag -q build "$out/docs.jsonl" --out "$out/kb-$1-$2" --epochs 1 --dtype "$1" \
    --heads "$2" > "$out/build-$1-$2.log" 2>&1 || rc=$?
  per_batch=$(tr '\r' '\n' < "$out/build-$1-$2.log" | grep -o '[0-9.]*s/batch' | tail -1)
  echo "| $1 | $2 | $(echo "$(date +%s.%N) - $s" | bc | xargs printf '%.0f') s | $([ $rc = 124 ] && echo "cut at 300 s" || echo "rc $rc") | ${per_batch:-?} |"
  rm -rf "$out/kb-$1-$2"
done | tee "$out/table.md"
