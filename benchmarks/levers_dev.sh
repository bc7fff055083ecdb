#!/usr/bin/env bash
# Issue 32's levers on the dev split (never test): each lever alone against today's defaults, on real and
# counterfactual HotpotQA, SmolLM2. Exploration first (n = 30, one seed: minutes per lever), then the levers that
# move own − shuffled confirmed at n = 100 with seeds 0,1,2 (`benchmarks/levers_dev.sh confirm LEVER...`).
# Measures per run: poly, poly-shuffled (own − shuffled: the document's own knowledge), poly-uniform, poly-combine,
# the bare reader; each row records its encode s/doc. Resumable: rerun the same command.
#   benchmarks/levers_dev.sh [explore|confirm] [LEVER...]        LEVER from the table below
set -euo pipefail
cd "$(dirname "$0")/.."
METHODS=closed-book-bare,poly,poly-shuffled,poly-uniform,poly-combine
declare -A LEVERS=(
  [defaults]=""
  [format-uniform]="--format-routing uniform"   # format samples apart from the facts
  [contrast0]="--contrast 0"                     # no format samples at all
  [qa6]="--max-qa 6"                             # more facts per paragraph
  [context1]="--context-qa 1"                    # one QA pair with the passage in context
  [epochs3]="--epochs 3"                         # a longer schedule
  [entropy]="--routing-entropy 0.5"              # sparser routing
)
action=${1:-explore}; shift || true
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(defaults format-uniform contrast0 qa6 context1 epochs3 entropy)
for name in "${names[@]}"; do
  [ -n "${LEVERS[$name]+x}" ] || { echo "unknown lever $name: choose from ${!LEVERS[*]}" >&2; exit 2; }
  for dataset in hotpotqa-cf hotpotqa; do
    if [ "$action" = explore ]; then
      n=30 seeds=0 out=runs/levers-dev-$dataset-n30-smollm2-$name
    else
      n=100 seeds=0,1,2 out=runs/levers-dev-$dataset-n100-smollm2-$name
    fi
    # shellcheck disable=SC2086  # the lever's flags are words
    .venv/bin/polyprag bench --dataset "$dataset" --split dev --n "$n" --seeds "$seeds" --methods "$METHODS" \
      ${LEVERS[$name]} --out "$out"
  done
done
