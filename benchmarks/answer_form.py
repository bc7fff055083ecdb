"""Is a method's F1 lead the answer's content or its form? F1 split into whether the answer is there and how much
else is said.

    .venv/bin/python benchmarks/answer_form.py RUN [--pairs A:B,...] [--qtype TYPE] [--json OUT.json]

From a finished `polyprag bench` run's predictions (every seed folder, as benchmarks/protocol_table.py reads
them), per method, the seed-averaged means over questions of:
- `f1`: token F1 (the headline metric);
- `contains`: the gold answer is in the answer as whole words (`metrics.accuracy`): the content, whatever else is said;
- `recall` / `precision`: the answer's tokens shared with the best gold alias over the gold's / the answer's tokens
  (F1's two halves; HotpotQA's yes/no rule: a wrong yes/no scores 0 on both);
- `words`: the answer's length in normalised tokens.
Then, for each pair A:B, A − B on each with the paired bootstrap 95% CI over questions (`compare.bootstrap_ci`) and
the one over the seeds too (`compare.bootstrap_ci_seeds`, in parentheses), over the seeds both rows have (a row
with fewer seeds is compared with the same seeds of the other, as protocol_table does).
A lead that sits in precision and words, with contains and recall level, is form: the same answer said shorter.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from polyprag.eval.compare import bootstrap_ci, bootstrap_ci_seeds, question_ids
from polyprag.eval.metrics import accuracy, f1_score, normalize_answer, token_halves
from protocol_table import seed_results

MEASURES = ("f1", "contains", "recall", "precision", "words")
PAIRS = (("poly-combine", "rag"), ("poly-combine", "poly-shuffled-combine"), ("poly-shuffled-combine", "rag"),
         ("poly-uniform-combine", "rag"), ("rag-gold", "rag"), ("poly", "poly-shuffled"))


def measures(prediction: str, golds: list[str]) -> dict[str, float]:
    """The five measures of one answer; recall and precision against the alias F1 scores best."""
    pred = normalize_answer(prediction)
    best = max(golds, key=lambda g: f1_score(prediction, [g]))
    recall, precision = token_halves(pred, normalize_answer(best))
    return {"f1": 100 * f1_score(prediction, golds), "contains": 100 * accuracy(prediction, golds),
            "recall": 100 * recall, "precision": 100 * precision, "words": float(len(pred.split()))}


def per_question(results: list[dict], method: str, qtype: str | None = None) -> dict[str, np.ndarray]:
    """Each measure (S, Q) per seed that ran the method and question (only questions of `qtype`, if named)."""
    have = [r for r in results if method in r["predictions"]]
    question_ids(have, method)
    runs = [[measures(p["prediction"], p["answers"]) for p in r["predictions"][method]
             if qtype is None or p.get("qtype") == qtype] for r in have]
    if not runs[0]:
        raise SystemExit(f"{method}: no question of type {qtype!r} (the types are the predictions' `qtype`)")
    return {m: np.array([[q[m] for q in run] for run in runs], dtype=float) for m in MEASURES}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--pairs", default=",".join(f"{a}:{b}" for a, b in PAIRS))
    ap.add_argument("--qtype", help="only the questions of this type (e.g. bridge, comparison)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = seed_results(args.run)
    methods = sorted({m for r in results for m in r["predictions"]})
    table = {m: per_question(results, m, args.qtype) for m in methods}
    seeds = {m: sum(m in r["predictions"] for r in results) for m in methods}
    print(f"{args.run}{f' ({args.qtype} questions)' if args.qtype else ''}: means over questions of the "
          "seed-averaged measures\n")
    print("| method | seeds | " + " | ".join(MEASURES) + " |\n|---|---|" + "---|" * len(MEASURES))
    for m in methods:
        print(f"| {m} | {seeds[m]} | " + " | ".join(f"{table[m][x].mean():.1f}" for x in MEASURES) + " |")
    out = {"run": str(args.run), "qtype": args.qtype, "means": {m: {x: round(float(table[m][x].mean()), 2) for x in MEASURES}
                                          for m in methods}, "seeds": seeds, "pairs": []}
    print("\n| a − b | " + " | ".join(MEASURES) + " |\n|---|" + "---|" * len(MEASURES))
    for pair in args.pairs.split(","):
        a, b = pair.split(":")
        if a not in table or b not in table:
            continue
        both = [r for r in results if a in r["predictions"] and b in r["predictions"]]  # paired seeds, as protocol_table
        qa, qb = per_question(both, a, args.qtype), per_question(both, b, args.qtype)
        cells, row = [], {"a": a, "b": b, "seeds": [r["config"]["seed"] for r in both]}
        for x in MEASURES:
            diff = qa[x].mean(0) - qb[x].mean(0)  # (Q,): seed-averaged
            lo, hi = bootstrap_ci(diff)
            seeds_lo, seeds_hi = bootstrap_ci_seeds(qa[x], qb[x])
            row[x] = {"diff": round(float(diff.mean()), 2), "ci95": [round(lo, 2), round(hi, 2)],
                      "ci95_seeds": [round(seeds_lo, 2), round(seeds_hi, 2)]}
            cells.append(f"{diff.mean():+.1f} [{lo:+.1f}, {hi:+.1f}] ([{seeds_lo:+.1f}, {seeds_hi:+.1f}])")
        out["pairs"].append(row)
        print(f"| {a} − {b} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
