"""benchmarks/answer_sources.py: where an answer's words come from, and own − shuffled on that."""

import argparse
import json
import sys
from pathlib import Path

import pytest

from polyprag.commands import SAMPLE
from polyprag.text.datasets import load_questions

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def answer_sources(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import answer_sources

    yield answer_sources
    for name in ("answer_sources", "protocol_table", "rerun"):
        sys.modules.pop(name, None)


def test_each_answer_is_placed_by_the_first_text_that_holds_it(answer_sources):
    source = answer_sources.source
    assert source("Yes.", "is it?", "yes", "yes") == "yes/no"
    assert source("the Dravoss", "where is the dravoss", "dravoss", "") == "question"  # articles dropped
    assert source("1412", "when?", "granted a charter in 1412 by", "1412") == "retrieved"
    assert source("Teodor Vask", "who?", "teodor vasko", "clock by teodor vask") == "elsewhere"  # whole words
    assert source("Marlow", "who?", "", "") == "nowhere" and source("...", "q", "", "") == "nowhere"


def test_own_minus_shuffled_counts_answers_recalled_from_the_retrieved_documents(answer_sources, tmp_path):
    questions = load_questions(SAMPLE / "questions.jsonl")[:2]
    run = tmp_path / "run"
    seed = run / "seed-0"
    (seed / "methods").mkdir(parents=True)
    (seed / "config.json").write_text(json.dumps({"dataset": "custom", "n": 2, "split": "questions"}))
    town, river = "quellmoor-town", "dravoss-river"
    answers = {"poly": ["Teodor Vask", "Lantern Wool Fair"], "poly-shuffled": ["Teodor Vask", "Marlow"]}
    for method, said in answers.items():
        predictions = [{"question": q.question, "prediction": a, "answers": q.answers, "retrieved": [town]}
                       for q, a in zip(questions, said)]
        predictions[0]["retrieved"] = [river]  # the first question's answer is then in another document
        row = {"method": method, "f1": 0.0}
        (seed / "methods" / f"{method}.json").write_text(json.dumps({"row": row, "predictions": predictions}))

    args = argparse.Namespace(data_dir="unused", corpus=str(SAMPLE / "docs.jsonl"),
                              questions=str(SAMPLE / "questions.jsonl"))
    found = answer_sources.sources(run, args)
    names = [[answer_sources.SOURCES[i] for i in row] for row in found["poly"]]
    assert names == [["elsewhere", "retrieved"]]
    report = answer_sources.report(run, found)
    assert "| poly | 1 | 0.0 | 50.0 | 50.0 | 0.0 | 0.0 |" in report
    assert "| poly | poly-shuffled | retrieved | +50.0 |" in report


def test_coverage_counts_questions_whose_answer_a_qa_pair_teaches(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import answer_coverage
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
    sys.modules.pop("answer_coverage", None)
