#!/usr/bin/env bash
# `time make demo` on a fresh clone of HEAD, as a newcomer runs it (warm pip cache, empty POLYPRAG_HOME), with the
# machine named beside the log: the newcomer issue's "Must show", which depends on the CPU (native bf16 or not).
#   benchmarks/make_demo_time.sh OUT_DIR      (stop any background benchmark first: 2 cores, one torch job)
set -euo pipefail
out=${1:?usage: $0 OUT_DIR}
mkdir -p "$out"
commit=$(git rev-parse --short HEAD)
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT  # the clone and its venv go whether make demo passes or fails
git clone -q . "$d/polyprag"
(cd "$d/polyprag" && POLYPRAG_HOME="$d/home" /usr/bin/time -f "wall %e s, maxrss %M KiB" make demo) \
  > "$out/make-demo-$commit.log" 2>&1
.venv/bin/python -c "import json; from polyprag.lm.models import machine; print(json.dumps(machine()))" \
  > "$out/machine.json"
grep -E "^(INFO +(closed-book|rag|poly)|wall )" "$out/make-demo-$commit.log" || tail -5 "$out/make-demo-$commit.log"
