#!/usr/bin/env bash
# What sets a float32 build's peak memory (CPUs without native bf16 build in float32): the same small build with
# and without --checkpoint-activations (each layer recomputed in the backward pass instead of keeping its inputs).
# 8 sample documents, 1 epoch; prints peak RSS (GNU time's maxrss) and wall time per build. Peak memory does not
# depend on what else runs; the wall times do (run it alone to read them).
#   benchmarks/fp32_build_peak.sh [OUT_FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/fp32-build-peak}
mkdir -p "$out"
head -8 polyprag/data/sample/docs.jsonl > "$out/docs.jsonl"
.venv/bin/python -c "import json; from polyprag.lm.models import machine; print(json.dumps(machine()))" > "$out/machine.json"
echo "| float32 build | peak RSS | wall |" | tee "$out/table.md"
echo "|---|---|---|" | tee -a "$out/table.md"
for flag in --no-checkpoint-activations --checkpoint-activations; do
  rm -rf "$out/kb"
  /usr/bin/time -f "%M %e" -o "$out/time$flag.txt" .venv/bin/polyprag -q build "$out/docs.jsonl" --out "$out/kb" \
    --epochs 1 --dtype float32 "$flag" > "$out/build$flag.log" 2>&1
  read -r kib wall < "$out/time$flag.txt"
  echo "| $flag | $kib KiB = $((kib / 1024)) MiB | $wall s |" | tee -a "$out/table.md"
done
rm -rf "$out/kb"
