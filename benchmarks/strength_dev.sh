#!/usr/bin/env bash
# poly-combine's strength (BuildConfig.combine_strength, first chosen on test questions) re-chosen on dev questions
# (issue 30): each seed's KB answers its questions again with the mixing weights scaled by each strength
# (benchmarks/adapter_strength.py; answering only: same KB, retrieval, passages and decoding), on
#   briefs   - the invented corpus's 30 dev questions, seeds 0,1,2: KBs built at the defaults (poly only, as the
#              defaults' exploration runs of levers_dev.sh built theirs);
#   hotpotqa - HotpotQA dev, n = 100, seeds 0,1,2: the KBs of `benchmarks/levers_dev.sh confirm defaults`.
# The rule, fixed before any run: the strength with the highest poly-combine F1, averaged over each corpus's seeds
# and then over the two corpora, becomes the default.
#   benchmarks/strength_dev.sh [run|table|collect]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's polyprag, whichever the venv was installed from
STRENGTHS=0.25,0.5,0.75,1
BRIEFS=(--corpus benchmarks/data/briefs/docs.jsonl --questions benchmarks/data/briefs/questions-dev.jsonl)
briefs=runs/strength-dev-briefs-n30-smollm2 hotpotqa=runs/levers-dev-hotpotqa-n100-smollm2-defaults
case ${1:-run} in
  run) .venv/bin/polyprag bench "${BRIEFS[@]}" --corpus-mode closed --n 30 --seeds 0,1,2 --methods poly \
         --dtype float32 --max-qa 3 --context-qa 0 --out "$briefs"  # the defaults when it ran (since: auto, 6, 1)
       for seed in 0 1 2; do
         for run in "$briefs" "$hotpotqa"; do
           [ -f "$run/seed-$seed/adapter-strength.json" ] && continue
           [ -d "$run/seed-$seed/kb" ] || { echo "$run/seed-$seed/kb is missing: run its bench first" >&2; exit 1; }
           extra=(); [ "$run" = "$briefs" ] && extra=("${BRIEFS[@]}")
           .venv/bin/python benchmarks/adapter_strength.py "$run/seed-$seed" "${extra[@]}" --strengths "$STRENGTHS"
         done
       done ;;
  table) .venv/bin/python benchmarks/strength_table.py "$briefs" "$hotpotqa" ;;
  collect) for run in "$briefs" "$hotpotqa"; do
             (cd runs && find "${run#runs/}" -name adapter-strength.json -print0 |
                xargs -0 -I{} install -D -m 644 {} ../benchmarks/results/strength-dev/{})
           done ;;
  *) echo "usage: $0 [run|table|collect]" >&2; exit 2 ;;
esac
