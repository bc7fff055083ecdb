#!/usr/bin/env bash
# Bench runs live in runs/ (ignored: KBs, adapters, caches); what a reader needs from them is committed under
# benchmarks/results/. collect: each run's configs, results, per-method predictions and the answers of rows
# still running (partial/: PRAG's rows resume from them on a machine without their adapters), runs/NAME ->
# benchmarks/results/FOLDER/NAME; restore: the reverse, so that a fresh checkout resumes a run where it stopped.
#   benchmarks/results_copy.sh collect|restore FOLDER NAME...     FOLDER relative to benchmarks/results (or .)
set -euo pipefail
cd "$(dirname "$0")/.."
action=$1 folder=$2; shift 2
dest=benchmarks/results/$folder
for name in "$@"; do
  case $action in
    collect) [ -d "runs/$name" ] || continue
             # a row finished since the last collect: its committed answers in partial/ are in its row now
             [ -d "$dest/$name" ] && (cd "$dest" && find "$name" -path '*/partial/*.json' ! -name '*.tally.json' -print0 |
               while IFS= read -r -d '' f; do
                 run=${f%/partial/*}; [ -e "$OLDPWD/runs/$run/methods/${f##*/}" ] && rm "$f"; true
               done)
             (cd runs && find "$name" \( -name config.json -o -name 'results.*' -o -path '*/methods/*.json' -o -path '*/partial/*.json' \) \
                -print0 | xargs -0 -I{} install -D -m 644 {} "../$dest/{}") ;;
    restore) [ -d "$dest/$name" ] || continue
             (cd "$dest" && find "$name" -type f -print0 | xargs -0 -I{} install -D -m 644 {} "$OLDPWD/runs/{}") ;;
    *) echo "usage: $0 collect|restore FOLDER NAME..." >&2; exit 2 ;;
  esac
done
