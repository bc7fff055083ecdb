"""Re-write a multi-seed bench run's results.json and results.md from its seeds' results with this checkout's
compare.py (bench writes them only when a run's last method finishes, so a finished run keeps the summary of the
code it ran with: e.g. means stored to 2 decimals before 2026-12-07, which rounded twice).
    .venv/bin/python benchmarks/resummarise.py RUN...     RUN: a folder holding seed-S/results.json
"""
import json
import sys
from pathlib import Path

from polyprag.eval.bench import COMPARISONS, CONTROLS
from polyprag.eval.compare import write_summary


def resummarise(run: Path) -> None:
    seeds = sorted(int(p.parent.name.removeprefix("seed-")) for p in run.glob("seed-*/results.json"))
    if not seeds:
        sys.exit(f"{run}: no seed-S/results.json in it; give a multi-seed bench run's --out folder")
    results = [json.loads((run / f"seed-{s}" / "results.json").read_text()) for s in seeds]
    write_summary(run, results, seeds, COMPARISONS, CONTROLS)
    print(f"{run}: results.json, results.md from seeds {seeds}")


if __name__ == "__main__":
    for arg in sys.argv[1:] or sys.exit(__doc__):
        resummarise(Path(arg))
