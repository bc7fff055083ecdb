#!/usr/bin/env bash
# Does answering in bfloat16 give the answers fp32 gives? One KB per corpus, built with `build`'s defaults (seed 0,
# fp32 training as always), then the same dev questions answered in each served mode with the base model in
# float32 and in bfloat16 (the bundled model's 16-bit copy, stored once: lm/models.narrow_copy); identical answers
# per mode (benchmarks/same_predictions.py), F1 each, and the peak RSS of each `eval` process and of the serving
# steps (benchmarks/answer_memory.py). Corpora: the bundled sample (its dev questions) and the invented briefs
# (their dev questions). Outputs in runs/dtype-agreement/ (a finished output is not run again):
#   benchmarks/dtype_agreement.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's polyprag, whichever the venv was installed from
out=runs/dtype-agreement
MODES=closed-book,rag,poly,poly-combine,poly-uniform
mkdir -p "$out"
[ -f "$out/sample/docs.jsonl" ] || .venv/bin/polyprag -q export --dataset sample --split dev --out "$out/sample"
mkdir -p "$out/briefs"
cp -n benchmarks/data/briefs/docs.jsonl "$out/briefs/docs.jsonl"
cp -n benchmarks/data/briefs/questions-dev.jsonl "$out/briefs/questions.jsonl"
for corpus in sample briefs; do
  dir=$out/$corpus
  # the KB built in float32, as when these results were taken (the default then)
  [ -f "$dir/kb/manifest.json" ] || .venv/bin/polyprag -q build "$dir/docs.jsonl" --out "$dir/kb" --seed 0 \
    --dtype float32
  for dtype in float32 bfloat16; do
    [ -f "$dir/$dtype.json" ] || /usr/bin/time -f "%M" -o "$dir/$dtype.peak-kib" .venv/bin/polyprag -q eval \
      --kb "$dir/kb" --questions "$dir/questions.jsonl" --modes "$MODES" --dtype "$dtype" --json "$dir/$dtype.json"
    [ -f "$dir/memory-$dtype.md" ] || .venv/bin/python benchmarks/answer_memory.py "$dir/kb" --dtype "$dtype" \
      > "$dir/memory-$dtype.md"
  done
  echo "$corpus (eval peak RSS: float32 $(cat "$dir/float32.peak-kib") KiB, bfloat16 $(cat "$dir/bfloat16.peak-kib") KiB):"
  .venv/bin/python benchmarks/same_predictions.py "$dir/float32.json" "$dir/bfloat16.json" \
    --json "$dir/same.json" || true  # differences are the result here, not a failure
done
.venv/bin/python benchmarks/dtype_table.py "$out" | tee "$out/table.md"
