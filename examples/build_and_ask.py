"""A knowledge base built from the bundled sample, saved, loaded back and asked in three modes: the routed
adapters alone (poly), with the passages too (poly-combine), and every adapter alike (poly-uniform, the control)."""

import os
import sys
import tempfile
from importlib.resources import files

from polyprag import BuildConfig
from polyprag import KnowledgeBase
from polyprag import load_corpus
from polyprag import load_model

docs = load_corpus(files("polyprag") / "data" / "sample" / "docs.jsonl")
lm = load_model(os.environ.get("POLYPRAG_EXAMPLE_MODEL", "smollm2-135m-instruct"))
folder = sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="polyprag-kb-")
KnowledgeBase.build(docs, lm, BuildConfig(), progress=False).save(folder)  # a few minutes on a laptop CPU
kb = KnowledgeBase.load(folder)
question = "What body of water does the Dravoss discharge into?"
for mode in ("poly", "poly-combine", "poly-uniform"):
    print(f"{mode:>12}: {kb.answer([question], mode=mode, progress=False)[0].answer}")
print(f"the knowledge base is in {folder}")
