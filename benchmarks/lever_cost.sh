#!/usr/bin/env bash
# A build lever's encode cost against the defaults', timed back to back on this machine (run it alone): issue 32's
# cost check for a lever the dev rule confirmed (levers_dev.sh header, 2026-12-07 14:50). `bench-speed` runs twice on
# the bundled sample corpus, the defaults first and then the lever's flags, and the verdict compares poly's encode
# s/doc with the bound: at most MAX times the defaults' (1.49 = issue 32's 8.4 s/doc over the set's 5.64).
# Only encode matters here, so the RSS children are skipped and latency, batch and retrieval run small.
#   benchmarks/lever_cost.sh OUT "LEVER FLAGS" [MAX]    e.g. benchmarks/lever_cost.sh runs/cost-paraphrase "--paraphrases 1"
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: $0 OUT \"LEVER FLAGS\" [MAX]} flags=${2:?usage: $0 OUT \"LEVER FLAGS\" [MAX]} max=${3:-1.49}
small=(--no-rss --retrieval-sizes 10000 --n-questions 5 --batch 8)
mkdir -p "$out"
.venv/bin/polyprag bench-speed "${small[@]}" --json "$out/defaults/bench-speed.json" 2>&1 | tee "$out/defaults.log"
# shellcheck disable=SC2086  # the lever's flags are words
.venv/bin/polyprag bench-speed "${small[@]}" $flags --json "$out/lever/bench-speed.json" 2>&1 | tee "$out/lever.log"
.venv/bin/python - "$out" "$flags" "$max" <<'EOF'
import json, sys
out, flags, bound = sys.argv[1], sys.argv[2], float(sys.argv[3])
runs = {name: json.load(open(f"{out}/{name}/bench-speed.json")) for name in ("defaults", "lever")}
rate = {name: r["encode"]["poly_s_per_doc"] for name, r in runs.items()}
ratio = rate["lever"] / rate["defaults"]
verdict = {"flags": flags, "defaults_s_per_doc": rate["defaults"], "lever_s_per_doc": rate["lever"],
           "samples": {name: r["n_samples"] for name, r in runs.items()}, "ratio": ratio, "bound": bound,
           "within": ratio <= bound, "machine": runs["lever"]["machine"]}
json.dump(verdict, open(f"{out}/verdict.json", "w"), indent=1)
print(f"poly encode s/doc: defaults {rate['defaults']:.2f}, with {flags} {rate['lever']:.2f}: {ratio:.2f}x "
      f"(bound {bound}x): {'within' if verdict['within'] else 'over'}")
EOF
