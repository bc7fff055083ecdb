"""benchmarks/answer_sources.py: where an answer's words come from, and own − shuffled on that."""

import argparse
import json
from pathlib import Path

import pytest

from polyprag.commands import SAMPLE
from polyprag.text.datasets import load_questions

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def answer_sources(bench_script):
    return bench_script("answer_sources")


def test_each_answer_is_placed_by_the_first_text_that_holds_it(answer_sources):
    source = answer_sources.source
    texts = {"question": "where is the dravoss", "retrieved": "granted a charter in 1412 by teodor vasko",
             "elsewhere": "clock by teodor vask | yes"}
    assert source("Yes.", texts) == "yes/no"
    assert source("the Dravoss", texts) == "question"  # articles dropped
    assert source("1412", texts) == "retrieved"
    assert source("Teodor Vask", texts) == "elsewhere"  # whole words: not inside "vasko"
    assert source("Teodor Vask", {**texts, "routed": "teodor vask"}) == "routed"  # before elsewhere
    assert source("Marlow", texts) == "nowhere" and source("...", texts) == "nowhere"


def _run(tmp_path, answers: dict[str, list[str]], retrieved: list[list[str]]):
    """A one-seed bench run folder on the sample's first two questions, as bench writes it."""
    questions = load_questions(SAMPLE / "questions.jsonl")[:2]
    seed = tmp_path / "run" / "seed-0"
    (seed / "methods").mkdir(parents=True)
    (seed / "config.json").write_text(json.dumps({"dataset": "custom", "n": 2, "split": "questions",
                                                  "corpus_mode": "closed", "k": 3, "build": {"training": {"seed": 0}}}))
    for method, said in answers.items():
        predictions = [{"id": q.id, "question": q.question, "prediction": a, "answers": q.answers, "retrieved": r}
                       for q, a, r in zip(questions, said, retrieved)]
        (seed / "methods" / f"{method}.json").write_text(json.dumps({"row": {"method": method, "f1": 0.0},
                                                                     "predictions": predictions}))
    return seed.parent


def test_own_minus_shuffled_counts_answers_recalled_from_the_retrieved_documents(answer_sources, tmp_path):
    from polyprag.eval.bench import workload
    from polyprag.text.retrieve import shuffled_hits
    from polyprag.text.corpus import load_corpus

    questions, docs = load_questions(SAMPLE / "questions.jsonl")[:2], load_corpus(SAMPLE / "docs.jsonl")
    work = workload(questions, docs, "closed", 3)
    retrieved = [[h.doc_id for h in hs] for hs in work.hits]
    by_id = {d.id: d for d in docs}
    donor = by_id[shuffled_hits(work.hits, [d.id for d in work.docs], 0)[1][0].doc_id]  # seed 0's draw
    assert retrieved[0][0] == "quellmoor-town" and "Teodor Vask" in by_id["quellmoor-town"].text
    assert donor.title.lower() not in questions[1].question.lower()
    run = _run(tmp_path, {"poly": ["Teodor Vask", "Marlow"], "poly-shuffled": ["Marlow", donor.title]}, retrieved)
    args = argparse.Namespace(data_dir="unused", corpus=str(SAMPLE / "docs.jsonl"),
                              questions=str(SAMPLE / "questions.jsonl"))
    found = answer_sources.sources(run, args)
    assert found["poly"].seeds == [0]
    assert [answer_sources.SOURCES[i] for i in found["poly-shuffled"].sources[0]] == ["nowhere", "routed"]
    report = answer_sources.report(run, found)
    assert "| poly | 1 | 0.0 | 50.0 | 0.0 | 0.0 | 50.0 | 0.0 |" in report
    assert "| poly | poly-shuffled | retrieved | +50.0 |" in report

    wrong = _run(tmp_path / "other", {"poly": ["x", "y"]}, [retrieved[1], retrieved[0]])
    with pytest.raises(SystemExit, match="retrieved documents are not these"):
        answer_sources.sources(wrong, args)


def test_coverage_counts_questions_whose_answer_a_qa_pair_teaches(bench_script):
    answer_coverage = bench_script("answer_coverage")
    from polyprag.text.augment import title_questions
    from polyprag.text.augment_rules import rule_augment
    from polyprag.text.corpus import load_corpus
    from polyprag.text.datasets import Question

    docs = load_corpus(SAMPLE / "docs.jsonl")
    taught = rule_augment(docs[0], max_qa=1).qa[0]
    named = title_questions(docs[0], 1)[0]  # (its first sentence with the name blanked, the name)
    questions = [Question("a", taught.question, [taught.answer], [docs[0].id], "bridge"),
                 Question("b", taught.question, ["no such answer"], [docs[0].id], "bridge"),
                 Question("c", named[0], [named[1]], [docs[0].id], "bridge")]
    row = answer_coverage.coverage(questions, docs, max_qa=1)
    assert row["answer_is_a_target"] == pytest.approx(100 / 3, abs=0.1)
    assert row["answer_is_a_target_with_title_qa"] == pytest.approx(200 / 3, abs=0.1)
    assert row["answer_in_retrieved_text"] == pytest.approx(200 / 3, abs=0.1)
    assert row["qa_per_doc"] == 1.0 and row["questions"] == 3
