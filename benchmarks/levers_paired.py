"""A lever against its reference set, paired over questions: poly, own − shuffled, poly-combine and poly-uniform,
each the lever's per-question F1 (mean over the seeds both have) minus the reference's, with a bootstrap 95% CI.
    .venv/bin/python benchmarks/levers_paired.py runs bf16+context1+qa6 bf16+context1+qa6+heads4
Reads runs/levers-dev-{hotpotqa-n100,briefs-n30}-smollm2-NAME/seed-*/results.json (`levers_dev.sh restore` puts the
committed rows there)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from polyprag.eval.compare import bootstrap_ci, per_seed_f1, question_ids

ROWS = (("poly", None), ("poly", "poly-shuffled"), ("poly-combine", None), ("poly-uniform", None))


def _runs(folder: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(folder.glob("seed-*/results.json"))}


def _value(runs: list[dict], a: str, b: str | None) -> np.ndarray:
    """(Q,) the row per question, averaged over the seeds (own − shuffled where b is given)."""
    x = per_seed_f1(runs, a).mean(0)
    return x - per_seed_f1(runs, b).mean(0) if b else x


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("reference")
    p.add_argument("lever")
    args = p.parse_args()
    print("| dataset | seeds | row | reference | lever | lever − reference [95% CI] |\n|---|---|---|---|---|---|")
    for dataset in ("hotpotqa-n100", "briefs-n30"):
        ref, new = (_runs(args.root / f"levers-dev-{dataset}-smollm2-{name}") for name in (args.reference, args.lever))
        seeds = sorted(ref.keys() & new.keys())  # the seeds both have: a seed's questions and retrieval are its own
        if not seeds:
            continue
        ref_runs, new_runs = [ref[s] for s in seeds], [new[s] for s in seeds]
        question_ids(ref_runs + new_runs, "poly")  # refuses runs on other questions (pairing by position would lie)
        for a, b in ROWS:
            r, n = _value(ref_runs, a, b), _value(new_runs, a, b)
            lo, hi = bootstrap_ci(n - r)
            print(f"| {dataset.split('-')[0]} | {len(seeds)} | {a}{' − ' + b if b else ''} | {r.mean():.1f} | "
                  f"{n.mean():.1f} | {(n - r).mean():+.1f} [{lo:+.1f}, {hi:+.1f}] |")


if __name__ == "__main__":
    main()
