"""What a user runs against what bench measured: `polyprag build` over the closed corpus of the HotpotQA test
questions, `polyprag eval` of poly and poly-combine over it, each compared with bench's row for the same
questions by a paired bootstrap over questions (issue: "bench runs what build + ask run"). They agree when the
95% interval of the difference holds 0.

    .venv/bin/python benchmarks/user_path.py run [--out runs/user-path-hotpotqa-test-n100-smollm2]
    .venv/bin/python benchmarks/user_path.py check [--out ...] [--bench benchmarks/results/protocol-hotpotqa-test-n100-smollm2]

`run` takes the CPU for a while (a build of every paragraph of the 100 questions, ~1,000 of them: about two
hours on 2 cores); `check` reads the eval JSON and every seed of the bench run, and writes OUT/agreement.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np

from polyprag.eval.compare import bootstrap_ci
from polyprag.eval.metrics import score

POLYPRAG = ".venv/bin/polyprag"


def run(out: Path) -> None:
    steps = [[POLYPRAG, "export", "--dataset", "hotpotqa", "--split", "test", "--n", "100", "--out", str(out / "data")],
             [POLYPRAG, "build", str(out / "data" / "docs.jsonl"), "--out", str(out / "kb")],
             [POLYPRAG, "eval", "--kb", str(out / "kb"), "--questions", str(out / "data" / "questions.jsonl"),
              "--modes", "poly,poly-combine", "--json", str(out / "eval.json")]]
    for step in steps:
        if step[1] == "build" and (out / "kb" / "manifest.json").exists():
            continue  # built already: a rerun only evaluates
        subprocess.run(step, check=True)


def f1_by_id(predictions: list[dict]) -> dict[str, float]:
    return {p["id"]: 100 * score(p["prediction"], p["answers"]).f1 for p in predictions}


def check(out: Path, bench: Path) -> dict:
    user = json.loads((out / "eval.json").read_text())["predictions"]
    report = {}
    for mode in ("poly", "poly-combine"):
        seeds = [f1_by_id(json.loads(p.read_text())["predictions"])
                 for p in sorted(bench.glob(f"seed-*/methods/{mode}.json"))]
        mine = f1_by_id(user[mode])
        ids = [i for i in mine if all(i in s for s in seeds)]
        bench_f1 = np.array([np.mean([s[i] for s in seeds]) for i in ids])  # (Q,) seed-averaged
        diff = np.array([mine[i] for i in ids]) - bench_f1
        lo, hi = bootstrap_ci(diff)
        report[mode] = {"user_f1": round(float(np.mean([mine[i] for i in ids])), 2),
                        "bench_f1": round(float(bench_f1.mean()), 2), "bench_seeds": len(seeds),
                        "n_questions": len(ids), "diff": round(float(diff.mean()), 2), "ci95": [round(lo, 2), round(hi, 2)],
                        "agree": lo <= 0 <= hi}
    (out / "agreement.json").write_text(json.dumps(report, indent=1))
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=["run", "check"])
    p.add_argument("--out", default="runs/user-path-hotpotqa-test-n100-smollm2")
    p.add_argument("--bench", default="benchmarks/results/protocol-hotpotqa-test-n100-smollm2")
    args = p.parse_args()
    if args.action == "run":
        run(Path(args.out))
    else:
        for mode, r in check(Path(args.out), Path(args.bench)).items():
            print(f"{mode}: user {r['user_f1']:.1f} vs bench {r['bench_f1']:.1f} ({r['bench_seeds']} seeds), "
                  f"difference {r['diff']:+.1f} [{r['ci95'][0]:+.1f}, {r['ci95'][1]:+.1f}]: "
                  f"{'agree' if r['agree'] else 'DISAGREE'}")


if __name__ == "__main__":
    main()
