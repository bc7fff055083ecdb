"""Answer the demo's questions again from a kept demo KB with poly-combine at other adapter strengths.

    polyprag demo --routing-init cluster --contrast 3 --combine-strength 0.5 --out runs/demo-cluster-c3-s05-kb
    .venv/bin/python benchmarks/demo_strength.py runs/demo-cluster-c3-s05-kb 1 0.75

Answering only (same KB, retrieval and decoding as the demo); prints one F1 per strength.
"""

import dataclasses
import sys
from pathlib import Path

from polyprag.text.corpus import load_corpus
from polyprag.text.datasets import load_questions
from polyprag.eval.evaluate import EvalConfig, evaluate
from polyprag.lm.generate import GenerationConfig
from polyprag.kb.knowledge import KnowledgeBase

SAMPLE = Path(__file__).resolve().parents[1] / "polyprag" / "data" / "sample"


def main() -> None:
    kb = KnowledgeBase.load(sys.argv[1], dtype="float32")  # what its recorded results ran in
    questions, docs = load_questions(SAMPLE / "questions.jsonl"), load_corpus(SAMPLE / "docs.jsonl")
    config = EvalConfig(modes=("poly-combine",), k=3, generation=GenerationConfig(max_new_tokens=16))  # the demo's
    for s in map(float, sys.argv[2:]):
        build = dataclasses.replace(kb.manifest.build, combine_strength=s)
        kb.manifest = dataclasses.replace(kb.manifest, build=build)
        print("s", s, "poly-combine F1", evaluate(kb.lm, questions, docs, config, kb=kb).rows[0]["f1"], flush=True)


if __name__ == "__main__":
    main()
