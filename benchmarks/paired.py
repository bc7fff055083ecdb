"""Any two rows of a multi-seed bench run, paired over questions: a − b with its bootstrap 95% CI (questions, and
questions and seeds), from the seeds' results as bench's own comparisons are computed (polyprag.eval.compare).
For a pair that bench's summary does not report, so that the number in a document has a command behind it.
    .venv/bin/python benchmarks/paired.py RUN A:B [A:B ...]     e.g. RUN poly:prag-tuned poly-combine:rag
RUN: a folder holding seed-S/results.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from polyprag.eval.compare import COMPARISON_HEADER, compare, comparison_line


def main(argv: list[str]) -> None:
    if len(argv) < 2 or not all(":" in x for x in argv[1:]):
        sys.exit(__doc__)
    run = Path(argv[0])
    results = [json.loads(p.read_text()) for p in sorted(run.glob("seed-*/results.json"))]
    if not results:
        sys.exit(f"{run}: no seed-S/results.json in it; give a multi-seed bench run's --out folder")
    print(f"{run} (seeds {[r['config']['seed'] for r in results]})\n\n" + COMPARISON_HEADER)
    for pair in argv[1:]:
        print(comparison_line(compare(results, *pair.split(":", 1))))


if __name__ == "__main__":
    main(sys.argv[1:])
