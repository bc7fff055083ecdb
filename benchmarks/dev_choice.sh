#!/usr/bin/env bash
# Re-choose on the dev split the defaults that were chosen on test questions (BENCHMARKS.md, "Where each
# default was chosen"): real and counterfactual HotpotQA together, SmolLM2, n = 100, seeds 0, 1, 2.
#   contrast questions: 3 (today) vs 0;  schedule: 2 epochs (today) vs 1;  combine strength: 0.75 vs 0.5 / 1.0
# The rule, fixed before any run: a default moves only if the other value's mean F1 over poly and poly-combine,
# averaged over the real and counterfactual dev runs, is higher; each run is resumable (rerun the script).
#   benchmarks/dev_choice.sh [runs|strengths]
set -euo pipefail
cd "$(dirname "$0")/.."
METHODS=closed-book-bare,poly,poly-combine,poly-uniform,poly-shuffled
VARIANTS=("defaults:" "contrast0:--contrast 0" "epochs1:--epochs 1")
action=${1:-runs}
for variant in "${VARIANTS[@]}"; do
  name=${variant%%:*} flags=${variant#*:}
  for dataset in hotpotqa hotpotqa-cf; do
    out=runs/dev-$dataset-n100-smollm2-$name
    if [ "$action" = runs ]; then
      # shellcheck disable=SC2086  # the flags are words
      .venv/bin/polyprag bench --dataset "$dataset" --split dev --n 100 --seeds 0,1,2 --methods "$METHODS" $flags --out "$out"
    elif [ "$action" = strengths ] && [ "$name" = defaults ]; then
      for seed in "$out"/seed-*; do  # answering only, from each seed's KB
        .venv/bin/python benchmarks/adapter_strength.py "$seed" --strengths 0.5,1.0 --modes poly-combine
      done
    fi
  done
done
