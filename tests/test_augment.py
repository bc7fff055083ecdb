"""Augmentation: LLM output parsing, failure fallback, the cache, and the training samples built."""

import json

from polyprag.text import augment
from polyprag.text.augment import augment_documents, parse_qa, training_samples
from polyprag.text.corpus import Document
from polyprag.lm.models import load_model

DOCS = [Document("marlow", "Marlow Bridge", "Marlow Bridge was finished in 1862 by the engineer Ada Feld. "
                 "It spans the river Tesk with three stone arches."),
        Document("velmark", "Velmark", "Velmark is a town on the river Tesk. It was founded in 1412 by Orrin Pell.")]


def test_parse_qa_takes_the_first_json_list_and_keeps_three():
    text = 'Sure! Here it is:\n[{"question": "Who?", "answer": "Ada", "full_answer": "Ada did."},' \
           '{"question": "When?", "answer": 1862}, {"question": "Where?", "answer": "Tesk"},' \
           '{"question": "What?", "answer": "arches"}]\nHope this helps.'
    pairs = parse_qa(text, DOCS[0].text)
    assert [(p.question, p.answer) for p in pairs] == [("Who?", "Ada"), ("When?", "1862"), ("Where?", "Tesk")]
    assert pairs[1].full_answer == "1862"  # missing full_answer falls back to the answer


def test_parse_qa_refuses_what_is_not_a_usable_list():
    assert parse_qa("no json here", "") is None
    assert parse_qa('[{"question": "Who?"}]', "") is None  # no answer
    assert parse_qa('[{"question": "Who?", "answer": "x"', "") is None  # truncated
    echo = '[{"question": "What is the capital of France?", "answer": "Paris", "full_answer": "Paris"}]'
    assert parse_qa(echo, DOCS[1].text) is None  # the prompt's own format example, copied


def test_parse_qa_keeps_the_passage_pairs_beside_a_copied_example():
    text = ('[{"question": "What is the capital of France?", "answer": "Paris"},'
            ' {"question": "Who founded Velmark?", "answer": "Orrin Pell"}]')
    assert [p.answer for p in parse_qa(text, DOCS[1].text)] == ["Orrin Pell"]


def test_llm_failures_are_counted_and_fall_back_to_rules(tiny_chat_model_dir, caplog):
    lm = load_model(str(tiny_chat_model_dir))  # random weights: never writes valid JSON
    augs = augment_documents(DOCS, "llm", lm, progress=False)
    assert [a.source for a in augs] == ["llm-failed+rules"] * 2
    assert all(a.qa for a in augs)
    assert "unparsable for 2 of 2 documents" in caplog.text


def test_the_cache_is_reused_and_keyed_by_augmenter_config(tmp_path):
    cache = tmp_path / "cache.jsonl"
    first = augment_documents(DOCS, "rules", cache=cache, max_qa=2)
    assert len(cache.read_text().splitlines()) == 2
    assert augment_documents(DOCS, "rules", cache=cache, max_qa=2) == first
    assert len(cache.read_text().splitlines()) == 2  # nothing recomputed
    augment_documents(DOCS, "rules", cache=cache, max_qa=5)
    assert len(cache.read_text().splitlines()) == 4  # another config, other entries
    cache.write_text(cache.read_text() + '{"key": "broken"\n')
    assert augment_documents(DOCS, "rules", cache=cache, max_qa=2) == first  # a bad line is skipped


def test_a_new_rules_version_recomputes_instead_of_reading_stale_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache.jsonl"
    augment_documents(DOCS, "rules", cache=cache, max_qa=2)
    monkeypatch.setattr(augment, "RULES_VERSION", augment.RULES_VERSION + 1)
    augment_documents(DOCS, "rules", cache=cache, max_qa=2)
    assert len(cache.read_text().splitlines()) == 4  # the changed rules wrote entries of their own


def test_training_samples_follow_prags_protocol():
    augs = augment_documents(DOCS, "rules", max_qa=3)
    samples = training_samples(DOCS, augs, context_qa=2, rewrite=True)
    for i, aug in enumerate(augs):
        mine = [s for s in samples if s.doc == i]
        bare = [s for s in mine if s.passage is None]
        assert len(bare) == len(aug.qa)  # every QA pair asked alone
        with_passage = [s for s in mine if s.passage == DOCS[i].content()]
        assert len(with_passage) == min(2, len(aug.qa))
        assert len(mine) == len(aug.qa) + 2 * min(2, len(aug.qa))
    lean = training_samples(DOCS, augs, context_qa=1, rewrite=False)
    assert len(lean) == sum(len(a.qa) + 1 for a in augs)
    json.dumps([s.__dict__ for s in lean])  # plain data


def test_prag_trains_on_its_published_recipe_and_prag_shared_on_polys_samples():
    """PRAG's get_train_data: the first half of the QA pairs (rounded up) with the passage and with the rewrite,
    the rest bare; poly's samples (the build's defaults): every QA pair bare, the first also with its passage,
    plus contrast questions."""
    from polyprag.text.augment import prag_samples, training_samples
    from polyprag.text.augment_rules import Augmentation, QAPair
    from polyprag.text.corpus import Document
    from polyprag.kb.manifest import BuildConfig

    doc = Document("d", "Title", "Ada was born in 1815. She lived in London. She wrote notes.")
    qa = tuple(QAPair(f"q{i}?", f"a{i}", f"Full a{i}.") for i in range(3))
    aug = Augmentation("d", "Rewritten text.", qa, "rules")
    prag = prag_samples([doc], [aug])
    assert [(s.question, s.passage) for s in prag] == [
        ("q0?", doc.content()), ("q0?", "Title\nRewritten text."), ("q1?", doc.content()),
        ("q1?", "Title\nRewritten text."), ("q2?", None)]
    more = Augmentation("d", "Rewritten text.", tuple(QAPair(f"q{i}?", f"a{i}", f"Full a{i}.") for i in range(6)), "rules")
    assert prag_samples([doc], [more]) == prag  # a build's --max-qa 6 is poly's recipe: PRAG keeps its 3 pairs
    b = BuildConfig()
    poly = training_samples([doc], [aug], b.context_qa, b.rewrite, b.contrast)
    assert [(s.question, s.passage) for s in poly][:4] == [  # the first pair also with its passage, never a rewrite
        ("q0?", doc.content()), ("q0?", None), ("q1?", None), ("q2?", None)]
    assert all(s.passage is None for s in poly[4:]) and len(poly) == 4 + b.contrast
