"""RAG in ten lines: BM25 over the bundled sample corpus, the top passages in the prompt of the default model."""

import os
from importlib.resources import files

from polyprag import BM25Index
from polyprag import load_corpus
from polyprag import load_model
from polyprag.lm.answer import answer_questions

docs = load_corpus(files("polyprag") / "data" / "sample" / "docs.jsonl")
lm = load_model(os.environ.get("POLYPRAG_EXAMPLE_MODEL", "smollm2-135m-instruct"))
question = "In which year did Quellmoor obtain its town charter?"
hits = BM25Index.build(docs).search([question], k=3)[0]
by_id = {d.id: d for d in docs}
answer = answer_questions(lm, [question], [[by_id[h.doc_id].content() for h in hits]], progress=False)[0]
print(f"{question} -> {answer.answer}  (from {', '.join(h.doc_id for h in hits)})")
