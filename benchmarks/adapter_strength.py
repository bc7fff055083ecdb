"""Answer a finished `polyprag bench` run's questions again with its adapters scaled: mixing weights s · w.

s = 1 is the run's own poly / poly-combine; s < 1 lets the passages (poly-combine) or the base reader
(poly) weigh more against the adapters. Answering only, on the same KB, questions, retrieval and decoding.

    .venv/bin/python benchmarks/adapter_strength.py runs/hotpotqa-n100-gemma3-cluster-c3 --strengths 0.5,0.25
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from polyprag.answer import answer_questions
from polyprag.bench import breakdown, workload
from polyprag.datasets import load_dataset
from polyprag.evaluate import prediction, score_row
from polyprag.generate import GenerationConfig, Routing
from polyprag.kb import KnowledgeBase
from polyprag.retrieve import passages


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a bench run folder (config.json, kb/)")
    p.add_argument("--strengths", default="0.5,0.25", help="comma-separated scales of the mixing weights")
    p.add_argument("--modes", default="poly-combine")
    p.add_argument("--data-dir", default="../shared/data")
    args = p.parse_args()
    run = Path(args.run)
    config = json.loads((run / "config.json").read_text())
    questions, corpus = load_dataset(config["dataset"], args.data_dir, config["n"])
    work = workload(questions, corpus, config["corpus_mode"], config["k"])
    kb = KnowledgeBase.load(run / "kb")
    generation, by_id = GenerationConfig(**config["generation"]), {d.id: d for d in kb.docs}
    rows = []
    for mode in args.modes.split(","):
        for s in map(float, args.strengths.split(",")):
            timings: list[float] = []
            weights = s * kb.weights(work.hits, "poly")  # (Q, G, M)
            ps = passages(work.hits, by_id) if mode == "poly-combine" else None
            answers = answer_questions(kb.lm, work.texts, ps, generation, timings=timings,
                                       routing=Routing(kb.layers, weights))
            row = score_row(f"{mode} (s={s:g})", work.questions, answers, work.retrieved, timings, sum(timings))
            row.update(breakdown(work, [prediction(q, a, r) for q, a, r in zip(work.questions, answers, work.retrieved)],
                                 added=set()))
            rows.append(row)
            print(f"{row['method']}: F1 {row['f1']:.1f}, EM {row['em']:.1f}, by type {row.get('f1_by_type')}", flush=True)
    out = run / "adapter-strength.json"
    out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
