"""How many answers two runs share, per method: the check that a change meant to keep behaviour (a refactor)
kept it. Reads `polyprag demo --json`, `polyprag eval --json` or a bench run's results.json (a seed folder's).
    .venv/bin/python benchmarks/same_predictions.py BEFORE.json AFTER.json [--json OUT]
Prints, per method both ran, identical predictions / questions; exits 1 if any differ."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def predictions(path: Path) -> dict[str, list[str]]:
    result = json.loads(path.read_text())
    return {m: [p["prediction"] for p in ps] for m, ps in result["predictions"].items()}


def same(before: dict[str, list[str]], after: dict[str, list[str]]) -> dict[str, dict]:
    out = {}
    for method in [m for m in before if m in after]:
        a, b = before[method], after[method]
        out[method] = {"identical": sum(x == y for x, y in zip(a, b)), "questions": max(len(a), len(b))}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--json", type=Path, help="write the counts here too")
    args = p.parse_args()
    counts = same(predictions(args.before), predictions(args.after))
    for method, c in counts.items():
        print(f"{method}: {c['identical']}/{c['questions']} identical")
    if args.json:
        args.json.write_text(json.dumps({"before": str(args.before), "after": str(args.after), "methods": counts},
                                        indent=2) + "\n")
    return 0 if counts and all(c["identical"] == c["questions"] for c in counts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
