"""Answer a finished `polyprag bench` run's questions again with its adapters scaled: mixing weights s · w.

s is absolute: s = 1 mixes as poly does, and the run's own poly-combine is s = its --combine-strength (0.75 by
default); s < 1 lets the passages (poly-combine) or the base reader (poly) weigh more against the adapters.
Answering only, on the same KB, questions, retrieval and decoding.

    .venv/bin/python benchmarks/adapter_strength.py runs/hotpotqa-n100-gemma3-cluster-c3 --strengths 0.5,0.25
"""

from __future__ import annotations

from polyprag.lm.answer import answer_questions
from polyprag.lm.generate import Routing
from polyprag.text.retrieve import passages
from rerun import finished_run, parser, scored, write


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--strengths", default="0.5,0.25", help="comma-separated scales of the mixing weights")
    p.add_argument("--modes", default="poly-combine")
    args = p.parse_args()
    run = finished_run(args)
    kb, work, by_id = run.kb, run.work, {d.id: d for d in run.kb.docs}
    rows = []
    for mode in args.modes.split(","):
        for s in map(float, args.strengths.split(",")):
            timings: list[float] = []
            weights = s * kb.weights(work.hits, "poly")  # (Q, G, M)
            ps = passages(work.hits, by_id) if mode == "poly-combine" else None
            answers = answer_questions(kb.lm, work.texts, ps, run.generation, timings=timings,
                                       routing=Routing(kb.layers, weights))
            rows.append(scored(f"{mode} (s={s:g})", run, answers, timings))
    write(run, "adapter-strength.json", rows)


if __name__ == "__main__":
    main()
