"""PRAG and Poly-PRAG side by side on the bundled sample's test questions, with the bare reader and RAG: the
library behind `polyprag bench` (same questions, retrieval, reader and decoding for every method)."""

import os
import sys
import tempfile
from importlib.resources import files

from polyprag.eval.bench import Bench, BenchConfig
from polyprag.text.corpus import load_corpus
from polyprag.text.datasets import load_questions

sample = files("polyprag") / "data" / "sample"
questions = load_questions(sample / "questions.jsonl")[0::2]  # the first question of each document: test
docs = load_corpus(sample / "docs.jsonl")
config = BenchConfig(dataset="sample", n=len(questions), corpus_mode="closed",
                     methods=("closed-book-bare", "rag", "prag", "poly", "poly-shuffled"))
out = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="polyprag-bench-")
result = Bench(os.environ.get("POLYPRAG_EXAMPLE_MODEL", "smollm2-135m-instruct"), config, out, progress=False).run(
    questions, docs)
for row in result["rows"]:
    print(f"{row['method']:>16}: F1 {row['f1']:5.1f}")
