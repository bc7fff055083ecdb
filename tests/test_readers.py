"""The readers the benchmark's controls rest on ask exactly what the methods they control for ask."""

from polyprag.kb.knowledge import KnowledgeBase
from polyprag.lm import answer
from polyprag.lm.models import load_model
from polyprag.readers import reader
from serving import CONFIG, DOCS


def test_rag_bare_asks_poly_combines_prompt_and_rag_adds_the_examples(tiny_chat_model_dir, monkeypatch):
    lm = load_model(str(tiny_chat_model_dir), dtype="float32")
    kb = KnowledgeBase.build(DOCS, lm, CONFIG, progress=False)
    question = ["When was Marlow Bridge finished?"]
    hits = kb.retrieve(question, 2)
    prompts = {}
    build = answer.build_prompt

    def record(name):
        def recorded(*args, **kwargs):
            prompts[name] = build(*args, **kwargs)
            return prompts[name]
        return recorded

    for name, read in (("rag-bare", reader("rag-bare", lm, DOCS)), ("rag", reader("rag", lm, DOCS)),
                       ("poly-combine", reader("poly-combine", kb=kb))):
        monkeypatch.setattr(answer, "build_prompt", record(name))
        read.answer(question, hits, answer.GenerationConfig(max_new_tokens=2), progress=False)
    assert prompts["rag-bare"] == prompts["poly-combine"]  # the same words; only the adapters differ
    assert "Marlow Bridge was finished in 1862" in prompts["rag-bare"]
    assert len(prompts["rag"]) > len(prompts["rag-bare"])  # rag's prompt carries the example exchanges as well
