"""poly-combine F1 per strength on each dev corpus, from benchmarks/strength_dev.sh's adapter-strength.json files,
and the strength its rule chooses (mean over each corpus's seeds, then over the corpora).

    .venv/bin/python benchmarks/strength_table.py RUN...     (each RUN holds seed-S/adapter-strength.json)
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

STRENGTH = re.compile(r"poly-combine \(s=(?P<s>[0-9.]+)\)")


def per_strength(run: Path) -> dict[float, list[float]]:
    """Each strength's poly-combine F1, one per seed that has landed."""
    f1: dict[float, list[float]] = {}
    for path in sorted(run.glob("seed-*/adapter-strength.json")):
        for row in json.loads(path.read_text()):
            if m := STRENGTH.fullmatch(row["method"]):
                f1.setdefault(float(m["s"]), []).append(row["f1"])
    return f1


def main() -> None:
    runs = [Path(r) for r in sys.argv[1:]]
    table = {r.name: per_strength(r) for r in runs}
    strengths = sorted(set.union(*(set(t) for t in table.values())))
    for name, t in table.items():  # the rule chooses among every strength, each over the run's same seeds
        if len({len(t.get(s, [])) for s in strengths}) > 1:
            raise SystemExit(f"{name}: seeds per strength {({s: len(t.get(s, [])) for s in strengths})}; "
                             "rerun benchmarks/strength_dev.sh run")
    print("| strength | " + " | ".join(f"{name} (seeds)" for name in table) + " | mean |")
    print("|---|" + "---|" * (len(table) + 1))
    means = {}
    for s in strengths:
        cells = [statistics.mean(t[s]) for t in table.values()]
        means[s] = statistics.mean(cells)
        print(f"| {s:g} | " + " | ".join(f"{c:.1f} ({len(t[s])})" for c, t in zip(cells, table.values()))
              + f" | {means[s]:.1f} |")
    if means:
        print(f"\nThe rule's choice: {max(means, key=means.get):g}")


if __name__ == "__main__":
    main()
