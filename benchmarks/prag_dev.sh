#!/usr/bin/env bash
# PRAG at its best (issue 30): its learning rate and epochs chosen on dev questions, never test. PRAG's published
# recipe (r 2, α 32, lr 3e-4, 1 epoch, its data recipe) is the `prag` row; each variant below is `prag-tuned` at
# another lr and epoch count, on the same samples and retrieval, SmolLM2, on
#   briefs   - the invented corpus's 30 dev questions, seeds 0,1,2;
#   hotpotqa - HotpotQA dev, n = 30, seed 0 (seeds 0,1,2 for the two finalists in TIED; below).
# The rule, fixed before any run: the variant with the highest mean F1 of prag-tuned and prag-tuned-combine,
# averaged over both corpora, becomes bench's prag-tuned (--prag-tuned-lr, --prag-tuned-epochs) if it beats the
# published recipe's same mean; the protocol then reports both, and every "poly beats PRAG" is made against the
# stronger. Changed 2026-12-04 (evening), before the remaining variants landed, for the protocol's cost (PRAG's
# encode is ~47 min per seed of a pair): the protocol trains only the chosen recipe, as its `prag` rows (PRAG's
# data recipe at the chosen lr and epochs; prag-shared the same on poly's samples); the published recipe where it
# is the choice. Changed 2026-12-04 (night), once lr3e-4-e4 landed level with lr1e-3-e1 (scores 31.13 and 31.12, far
# inside one seed's spread) and before any further run: those two also run HotpotQA dev seeds 1 and 2 (TIED below;
# the briefs have 3 seeds each), and the same rule over all their seeds chooses between them. Resumable: rerun the same command. `collect` copies the finished rows into
# benchmarks/results/prag-dev; `.venv/bin/python benchmarks/prag_table.py runs` prints the variants and the choice.
#   benchmarks/prag_dev.sh [run|collect|restore] [VARIANT...]     VARIANT from the table below
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's polyprag, whichever the venv was installed from
BRIEFS=(--corpus benchmarks/data/briefs/docs.jsonl --questions benchmarks/data/briefs/questions-dev.jsonl
        --corpus-mode closed)
declare -A VARIANTS=(
  [published]="--methods closed-book-bare,prag,prag-combine"         # lr 3e-4, 1 epoch: PRAG as published
  [lr1e-3-e1]="--prag-tuned-lr 1e-3 --prag-tuned-epochs 1"
  [lr1e-3-e2]="--prag-tuned-lr 1e-3 --prag-tuned-epochs 2"           # bench's prag-tuned until chosen here
  [lr3e-3-e2]="--prag-tuned-lr 3e-3 --prag-tuned-epochs 2"
  [lr3e-4-e4]="--prag-tuned-lr 3e-4 --prag-tuned-epochs 4"
)
TIED=" lr1e-3-e1 lr3e-4-e4 "  # level after HotpotQA seed 0 (header): three HotpotQA seeds each
action=${1:-run}; shift || true
names=("$@")
[ ${#names[@]} -eq 0 ] && names=(published lr1e-3-e1 lr1e-3-e2 lr3e-3-e2 lr3e-4-e4)
for name in "${names[@]}"; do
  [ -n "${VARIANTS[$name]+x}" ] || { echo "unknown variant $name: choose from ${!VARIANTS[*]}" >&2; exit 2; }
  for dataset in briefs hotpotqa; do
    data=("${BRIEFS[@]}") seeds=0,1,2
    [ "$dataset" = hotpotqa ] && data=(--dataset hotpotqa --split dev) seeds=0
    [ "$dataset" = hotpotqa ] && [[ $TIED == *" $name "* ]] && seeds=0,1,2
    run=prag-dev-$dataset-n30-smollm2-$name
    case $action in
      # float32 and combine strength 0.75 (poly's alone: no PRAG row reads it), the defaults every variant began with
      # shellcheck disable=SC2086  # the variant's flags are words; a later --methods wins
      run) .venv/bin/polyprag bench "${data[@]}" --n 30 --seeds "$seeds" --methods prag-tuned,prag-tuned-combine \
             --dtype float32 --combine-strength 0.75 ${VARIANTS[$name]} --out "runs/$run" ;;
      collect|restore) benchmarks/results_copy.sh "$action" prag-dev "$run" ;;
      *) echo "usage: $0 [run|collect|restore] [VARIANT...]" >&2; exit 2 ;;
    esac
  done
done
