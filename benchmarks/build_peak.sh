#!/usr/bin/env bash
# Peak memory of `polyprag build` on the sample documents under each flag set given, one build after the other:
# GNU time's maxrss and wall time per build, a Markdown table and the machine. Peak memory does not depend on what
# else runs; the wall times do (run it alone to read them).
#   benchmarks/build_peak.sh OUT_FOLDER "FLAGS" ["FLAGS" ...]    e.g. build_peak.sh runs/peak "--paraphrases 0" ""
# DOCS (the first N sample documents, default all 30), EPOCHS (default 1: the peak is reached in the first) and
# BASE (flags every build gets) set the build; "" is build's defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: $0 OUT_FOLDER \"FLAGS\" [\"FLAGS\" ...]}; shift
[ $# -ge 1 ] || { echo "usage: $0 OUT_FOLDER \"FLAGS\" [\"FLAGS\" ...]" >&2; exit 2; }
mkdir -p "$out"
head -"${DOCS:-30}" polyprag/data/sample/docs.jsonl > "$out/docs.jsonl"
.venv/bin/python -c "import json; from polyprag.lm.models import machine; print(json.dumps(machine()))" > "$out/machine.json"
read -ra base <<< "${BASE:-}"
echo "| build flags (beside --epochs ${EPOCHS:-1} ${BASE:-}) | peak RSS | wall |" | tee "$out/table.md"
echo "|---|---|---|" | tee -a "$out/table.md"
i=0
for flags in "$@"; do
  i=$((i + 1))
  read -ra extra <<< "$flags"
  rm -rf "$out/kb"
  /usr/bin/time -f "%M %e" -o "$out/time-$i.txt" .venv/bin/polyprag -q build "$out/docs.jsonl" --out "$out/kb" \
    --epochs "${EPOCHS:-1}" "${base[@]}" "${extra[@]}" > "$out/build-$i.log" 2>&1
  read -r kib wall < "$out/time-$i.txt"
  echo "| ${flags:-(the defaults)} | $kib KiB = $((kib / 1024)) MiB | $wall s |" | tee -a "$out/table.md"
done
rm -rf "$out/kb"
