import dataclasses, sys
from polyprag.kb import KnowledgeBase
from polyprag.evaluate import EvalConfig, evaluate
from polyprag.datasets import load_questions
from polyprag.corpus import load_corpus
from polyprag.generate import GenerationConfig
from pathlib import Path
S = Path("polyprag/data/sample")
kb = KnowledgeBase.load("runs/demo-cluster-c3-s05-kb")
qs, docs = load_questions(S / "questions.jsonl"), load_corpus(S / "docs.jsonl")
for s in map(float, sys.argv[1:]):
    kb.manifest = dataclasses.replace(kb.manifest, build=dataclasses.replace(kb.manifest.build, combine_strength=s))
    r = evaluate(kb.lm, qs, docs, EvalConfig(modes=("poly-combine",), k=3, generation=GenerationConfig(max_new_tokens=16)), kb=kb)
    print("s", s, "poly-combine F1", r.rows[0]["f1"], flush=True)
