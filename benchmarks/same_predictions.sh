#!/usr/bin/env bash
# Does the working tree answer exactly as revision REV did? The demo (bundled sample, SmolLM2, its defaults) and
# one HotpotQA dev run (n = 30, seed 0, the poly rows and the bare reader), each run at REV (a git worktree on
# PYTHONPATH, the same .venv) and here; then benchmarks/same_predictions.py counts identical answers per mode.
# Outputs in runs/same-predictions-REV/ (a finished output is not run again):
#   benchmarks/same_predictions.sh REV
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # this checkout's polyprag, whichever the venv was installed from
rev=$(git rev-parse --short "${1:?usage: benchmarks/same_predictions.sh REV}")
out=runs/same-predictions-$rev
old=$(mktemp -d)/polyprag-$rev
mkdir -p "$out"
git worktree add -q --detach "$old" "$rev"
trap 'git worktree remove --force "$old"' EXIT
METHODS=closed-book-bare,poly,poly-shuffled,poly-uniform,poly-combine
run() {  # run SIDE: the demo and the bench run with the code of SIDE (before: REV, after: this tree)
  local side=$1 path=$PWD here=$PWD
  [ "$side" = before ] && path=$old
  cd "$path"  # python -m puts the current folder first on sys.path: run from the side's own tree
  [ -f "$here/$out/demo-$side.json" ] || PYTHONPATH=$path "$here/.venv/bin/python" -m polyprag.cli demo \
    --json "$here/$out/demo-$side.json"
  [ -f "$here/$out/hotpotqa-$side/seed-0/results.json" ] || PYTHONPATH=$path "$here/.venv/bin/python" -m polyprag.cli \
    bench --dataset hotpotqa --data-dir "$here/../shared/data" --split dev --n 30 --seeds 0 --methods "$METHODS" \
    --out "$here/$out/hotpotqa-$side"
  cd "$here"
}
run before
run after
status=0
for name in demo hotpotqa; do
  b=$out/$name-before.json a=$out/$name-after.json
  [ "$name" = hotpotqa ] && b=$out/hotpotqa-before/seed-0/results.json a=$out/hotpotqa-after/seed-0/results.json
  echo "$name:"
  .venv/bin/python benchmarks/same_predictions.py "$b" "$a" --json "$out/$name-same.json" || status=1
done
exit $status
