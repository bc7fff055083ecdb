"""Answer a finished `polyprag bench` run's questions again from its knowledge base with the other combination.

The combination (mean of the retrieved documents' weights, or sum of their mixtures' adapters) changes only
answering, not training: this measures it alone, on the same KB, questions, retrieval and decoding as the run.

    .venv/bin/python benchmarks/combine.py runs/hp30-g-cluster --combine sum
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from polyprag.generate import GenerationConfig
from polyprag.bench import breakdown, workload
from polyprag.datasets import load_dataset
from polyprag.evaluate import prediction, score_row
from polyprag.kb import COMBINES, KnowledgeBase


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", help="a bench run folder (config.json, kb/)")
    p.add_argument("--combine", choices=COMBINES, default="sum")
    p.add_argument("--modes", default="poly,poly-combine")
    p.add_argument("--data-dir", default="../shared/data")
    args = p.parse_args()
    run = Path(args.run)
    config = json.loads((run / "config.json").read_text())
    questions, corpus = load_dataset(config["dataset"], args.data_dir, config["n"])
    work = workload(questions, corpus, config["corpus_mode"], config["k"])
    kb = KnowledgeBase.load(run / "kb")
    generation = GenerationConfig(**config["generation"])
    rows = []
    for mode in args.modes.split(","):
        timings: list[float] = []
        answers = kb.answer(work.texts, mode, config["k"], generation, timings=timings, hits=work.hits,
                            combine=args.combine)
        row = score_row(f"{mode} ({args.combine})", work.questions, answers, work.retrieved, timings, sum(timings))
        preds = [prediction(q, a, r) for q, a, r in zip(work.questions, answers, work.retrieved)]
        row.update(breakdown(work, preds, added=set()))
        rows.append(row)
        print(f"{row['method']}: F1 {row['f1']:.1f}, EM {row['em']:.1f}, by type {row.get('f1_by_type')}")
    out = run / f"combine-{args.combine}.json"
    out.write_text(json.dumps(rows, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
