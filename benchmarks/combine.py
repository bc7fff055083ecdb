"""Answer a finished `polyprag bench` run's questions again from its knowledge base with the other combination.

The combination (mean of the retrieved documents' weights, or sum of their mixtures' adapters) changes only
answering, not training: this measures it alone, on the same KB, questions, retrieval and decoding as the run.

    .venv/bin/python benchmarks/combine.py runs/hp30-g-cluster --combine sum
"""

from __future__ import annotations

from polyprag.kb.knowledge import COMBINES
from rerun import finished_run, parser, scored, write


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--combine", choices=COMBINES, default="sum")
    p.add_argument("--modes", default="poly,poly-combine")
    args = p.parse_args()
    run = finished_run(args)
    rows = []
    for mode in args.modes.split(","):
        timings: list[float] = []
        answers = run.kb.answer(run.work.texts, mode, run.config["k"], run.generation, timings=timings,
                                hits=run.work.hits, combine=args.combine)
        rows.append(scored(f"{mode} ({args.combine})", run, answers, timings))
    write(run, f"combine-{args.combine}.json", rows)


if __name__ == "__main__":
    main()
