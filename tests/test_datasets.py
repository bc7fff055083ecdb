"""Dataset loaders: PRAG's per-type sampling, a deduplicated closed corpus, gold ids; user question files."""

import json
from pathlib import Path

import pytest

from polyprag.datasets import HOTPOTQA_FILE, load_dataset, load_hotpotqa, load_questions
from polyprag.errors import InputError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _row(i, kind, shared_title="Shared"):
    return {"question_id": f"{kind}{i}", "question_text": f"{kind} question {i}?",
            "answers_objects": [{"spans": [f"answer {i}"]}],
            "contexts": [{"id": "0", "title": f"Gold {kind} {i}", "paragraph_text": f"gold text {i}", "is_supporting": True},
                         {"id": "1", "title": shared_title, "paragraph_text": "same distractor", "is_supporting": False}]}


def test_hotpotqa_takes_first_rows_of_each_type_and_dedupes_paragraphs(tmp_path):
    rows = [_row(i, "bridge") for i in range(4)] + [_row(i, "comparison") for i in range(4)]
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    questions, docs = load_hotpotqa(path, n=3)
    assert [q.id for q in questions] == ["bridge0", "bridge1", "comparison0"]
    assert [d.id for d in docs].count("Shared") == 1  # one paragraph, shared by all questions
    assert questions[2].gold_doc_ids == ["Gold comparison 0"]
    assert questions[0].answers == ["answer 0"]


def test_same_title_different_text_gets_distinct_ids(tmp_path):
    a, b = _row(0, "bridge"), _row(1, "comparison")
    b["contexts"][1]["paragraph_text"] = "another text"
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(a) + "\n" + json.dumps(b) + "\n")
    _, docs = load_hotpotqa(path, n=2)
    assert {d.id for d in docs if d.title == "Shared"} == {"Shared", "Shared#2"}


def test_user_questions_file_and_its_errors(tmp_path):
    good = tmp_path / "q.jsonl"
    good.write_text('{"id": 7, "question": "Who?", "answers": "Ada"}\n\n')
    (q,) = load_questions(good)
    assert (q.id, q.answers, q.gold_doc_ids) == ("7", ["Ada"], [])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "question": "Who?", "answers": ["Ada"]}\n{"id": 2, "question": "Why?", "answers": []}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2: \"answers\" must be a non-empty list"):
        load_questions(bad)
    with pytest.raises(InputError, match="not valid JSON"):
        (tmp_path / "t.jsonl").write_text('{"question": "Who?", "answ')
        load_questions(tmp_path / "t.jsonl")


@pytest.mark.skipif(not (SHARED / HOTPOTQA_FILE).exists(), reason=f"needs ../shared/data ({SHARED}); CI has it")
def test_real_hotpotqa_closed_corpus():
    questions, docs = load_dataset("hotpotqa", SHARED, n=100)
    assert len(questions) == 100
    ids = {d.id for d in docs}
    assert len(ids) == len(docs) and 500 < len(docs) < 1000
    assert all(len(q.gold_doc_ids) == 2 and set(q.gold_doc_ids) <= ids for q in questions)
    assert questions[0].answers == ["Chief of Protocol"]


def test_export_round_trips_through_the_corpus_and_question_loaders(tmp_path):
    from polyprag.cli import main
    from polyprag.corpus import load_corpus

    rows = [_row(0, "bridge", shared_title="AC/DC"), _row(0, "comparison", shared_title="AC/DC")]
    data = tmp_path / "data" / HOTPOTQA_FILE
    data.parent.mkdir(parents=True)
    data.write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["export", "--dataset", "hotpotqa", "--data-dir", str(tmp_path / "data"), "--n", "2",
                 "--out", str(tmp_path / "out")]) == 0
    docs = load_corpus(tmp_path / "out" / "docs.jsonl")
    questions = load_questions(tmp_path / "out" / "questions.jsonl")
    assert "AC_DC" in {d.id for d in docs}  # no path separators in ids; the title keeps its slash
    assert {d.title for d in docs} >= {"AC/DC"}
    assert [q.gold_doc_ids for q in questions] == [["Gold bridge 0"], ["Gold comparison 0"]]
