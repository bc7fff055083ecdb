"""Dataset loaders: PRAG's per-type sampling, a deduplicated closed corpus, gold ids; user question files."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from polyprag.text.datasets import (
    CORPUS_NOTE,
    CWQ_FILE,
    DATASET_FILES,
    HOTPOTQA_FILE,
    POPQA_FILE,
    TWOWIKI_FILE,
    Question,
    Split,
    held_out,
    load_dataset,
    load_hotpotqa,
    load_questions,
    sample_per_type,
    write_questions,
)
from polyprag.errors import InputError

ALL = Split(reserved=0)  # fixture files are a few rows: none reserved, the test half (shared files: the default)

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
    questions, docs = load_hotpotqa(path, n=3, split=ALL)
    assert [q.id for q in questions] == ["bridge0", "bridge1", "comparison0"]
    assert [d.id for d in docs].count("Shared") == 1  # one paragraph, shared by all questions
    assert questions[2].gold_doc_ids == ["Gold comparison 0"]
    assert questions[0].answers == ["answer 0"]


def test_same_title_different_text_gets_distinct_ids(tmp_path):
    a, b = _row(0, "bridge"), _row(1, "comparison")
    b["contexts"][1]["paragraph_text"] = "another text"
    path = tmp_path / "h.jsonl"
    path.write_text(json.dumps(a) + "\n" + json.dumps(b) + "\n")
    _, docs = load_hotpotqa(path, n=2, split=ALL)
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


needs_shared = pytest.mark.skipif(not (SHARED / HOTPOTQA_FILE).exists(),
                                  reason=f"needs ../shared/data ({SHARED}); CI has it")


def test_held_out_questions_and_paragraphs_are_never_the_evaluated_ones(tmp_path):
    rows = [_row(i, "bridge") for i in range(8)] + [_row(i, "comparison") for i in range(8)]  # 4 test, 4 dev each
    (tmp_path / "hotpotqa").mkdir()
    (tmp_path / DATASET_FILES["hotpotqa"]).write_text("\n".join(json.dumps(r) for r in rows))
    questions, docs = held_out("hotpotqa", tmp_path, n=2, m=4, split=ALL)  # test: the dev split's first m
    assert [q.id for q in questions] == ["bridge4", "bridge5", "comparison4", "comparison5"]
    assert sorted(d.title for d in docs) == ["Gold bridge 4", "Gold bridge 5", "Gold comparison 4", "Gold comparison 5"]
    # the shared distractor is one of the evaluated questions' paragraphs: held back from training
    questions, docs = held_out("hotpotqa", tmp_path, n=2, m=2, split=replace(ALL, name="dev"))  # dev: after n
    assert [q.id for q in questions] == ["bridge5", "comparison5"]
    assert sorted(d.title for d in docs) == ["Gold bridge 5", "Gold comparison 5"]


@needs_shared
def test_real_hotpotqa_closed_corpus():
    questions, docs = load_dataset("hotpotqa", SHARED, n=100)
    assert len(questions) == 100
    ids = {d.id for d in docs}
    assert len(ids) == len(docs) and 500 < len(docs) < 1000
    assert all(len(q.gold_doc_ids) == 2 and set(q.gold_doc_ids) <= ids for q in questions)
    assert questions[0].answers == ["Chief of Protocol"]


def test_export_round_trips_through_the_corpus_and_question_loaders(tmp_path):
    from polyprag.cli import main
    from polyprag.text.corpus import load_corpus

    rows = [_row(0, "bridge", shared_title="AC/DC")] + [_row(i, "bridge") for i in range(1, 52)]
    rows += [_row(0, "comparison", shared_title="AC/DC")] + [_row(i, "comparison") for i in range(1, 52)]
    data = tmp_path / "data" / HOTPOTQA_FILE  # 52 rows per type: the last 50 reserved, then 1 test and 1 dev
    data.parent.mkdir(parents=True)
    data.write_text("\n".join(json.dumps(r) for r in rows))
    assert main(["export", "--dataset", "hotpotqa", "--data-dir", str(tmp_path / "data"), "--n", "2",
                 "--out", str(tmp_path / "out")]) == 0
    docs = load_corpus(tmp_path / "out" / "docs.jsonl")
    questions = load_questions(tmp_path / "out" / "questions.jsonl")
    assert "AC_DC" in {d.id for d in docs}  # no path separators in ids; the title keeps its slash
    assert {d.title for d in docs} >= {"AC/DC"}
    assert [q.gold_doc_ids for q in questions] == [["Gold bridge 0"], ["Gold comparison 0"]]


def test_per_type_sampler_balances_types_and_fills_short_ones():
    types = ["b", "a", "b", "a", "b", "c", "b"]  # first appearance: b, a, c
    assert sample_per_type(types, 4) == [0, 2, 1, 5]  # one each; b, first seen, gets the remainder
    assert sample_per_type(types, 5) == [0, 2, 1, 3, 5]  # c has one row; the others share what it leaves
    assert sample_per_type(types, 6) == [0, 2, 4, 1, 3, 5]
    assert sample_per_type(types, 99) == [0, 2, 4, 6, 1, 3, 5]
    assert sample_per_type(types, 3, order=("c", "a")) == [5, 1, 0]  # a fixed order beats first appearance
    assert sample_per_type([], 3) == [] and sample_per_type(types, 0) == []


def _official(i, kind, shared="Shared"):
    """A HotpotQA / 2WikiMultihopQA release row; HotpotQA sentences keep their leading spaces."""
    return {"_id": f"{kind}/{i}", "question": f"{kind} {i}?", "answer": f"answer {i}", "type": kind,
            "supporting_facts": [[f"Gold {kind} {i}", 0], [f"Gold {kind} {i}", 1]],
            "context": [[shared, ["Same", " distractor."]], [f"Gold {kind} {i}", ["First.", " Second."]]]}


def test_official_hotpotqa_format_is_detected_and_sampled_per_type(tmp_path):
    rows = [_official(0, "comparison")] + [_official(i, "bridge") for i in range(3)] + [_official(1, "comparison")]
    path = tmp_path / "hotpot_dev_distractor_v1.json"
    path.write_text(json.dumps(rows))
    questions, docs = load_dataset("hotpotqa", tmp_path / "absent", n=3, path=path, split=ALL)
    assert [q.id for q in questions] == ["bridge_0", "bridge_1", "comparison_0"]  # bridge first, ids sanitized
    assert [q.qtype for q in questions] == ["bridge", "bridge", "comparison"]
    assert questions[0].gold_doc_ids == ["Gold bridge 0"] and questions[0].answers == ["answer 0"]
    by_id = {d.id: d for d in docs}
    assert len(docs) == 4 and by_id["Shared"].text == "Same distractor."  # deduped; one space between sentences


def _twowiki(i, kind):
    row = _official(i, kind)
    row["supporting_facts"] = [[f"Gold {kind} {i}", 0], ["Bridge", 0]]
    row["context"].append(["Bridge", ["Shared by every question."]])
    # the DERIVED export stores these lists as Python-literal text
    row.update({k: repr(row[k]) for k in ("context", "supporting_facts")}, evidences=repr([["a", "b", "c"]]))
    return row


def test_2wiki_reads_literal_strings_samples_per_type_and_maps_gold_titles(tmp_path):
    kinds = ["compositional", "comparison", "inference", "bridge_comparison"]
    rows = [_twowiki(i, k) for i in range(3) for k in kinds[:3]] + [_twowiki(0, "bridge_comparison")]
    rows[0]["answer_aliases"] = ["alias 0"]
    data = tmp_path / TWOWIKI_FILE
    data.parent.mkdir(parents=True)
    data.write_text(json.dumps(rows))
    questions, docs = load_dataset("2wiki", tmp_path, n=7, split=ALL)
    counts = {k: [q.qtype for q in questions].count(k) for k in kinds}
    assert counts == {"bridge_comparison": 1, "comparison": 2, "compositional": 2, "inference": 2}
    q = next(q for q in questions if q.id == "compositional_0")
    assert q.gold_doc_ids == ["Gold compositional 0", "Bridge"] and q.answers == ["answer 0", "alias 0"]
    assert [d.id for d in docs].count("Bridge") == 1 and {g for q in questions for g in q.gold_doc_ids} <= {
        d.id for d in docs}


def _popqa(i, prop):
    paragraphs = [{"title": f"Subject {i}", "text": f"Subject {i} is a {prop}.", "is_supporting": True},
                  {"title": "Politician", "text": "A politician  is a person.", "is_supporting": True}]
    return {"id": i, "subj": f"Subject {i}", "prop": prop, "obj": "politician", "question": f"What is {i}?",
            "o_aliases": '["pol"]', "possible_answers": '["politician", "pol"]', "paragraphs": repr(paragraphs)}


def test_popqa_takes_first_rows_with_supporting_paragraphs(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([_popqa(0, "occupation"), _popqa(1, "occupation"), _popqa(2, "place of birth")]))
    questions, docs = load_dataset("popqa", tmp_path, n=2, path=path, split=ALL)
    assert [(q.id, q.qtype) for q in questions] == [("0", "occupation"), ("1", "occupation")]  # PRAG: first n
    assert questions[1].gold_doc_ids == ["Subject 1", "Politician"] and questions[1].answers == ["politician", "pol"]
    assert [d.id for d in docs] == ["Subject 0", "Politician", "Subject 1"]
    assert docs[1].text == "A politician is a person."


def _write(data_dir, rel, text):
    (data_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    (data_dir / rel).write_text(text)


def test_cwq_borrows_the_other_corpora_and_has_no_gold(tmp_path):
    _write(tmp_path, CWQ_FILE, json.dumps([{"test_id": i, "question": f"cwq {i}?", "answer": [f"a{i}", f"alias{i}"]}
                                            for i in range(3)]))
    with pytest.raises(InputError, match="cwq has no passages and borrows the hotpotqa paragraphs"):
        load_dataset("cwq", tmp_path, n=2)
    _write(tmp_path, HOTPOTQA_FILE, json.dumps(_row(0, "bridge")) + "\n" + json.dumps(_row(0, "comparison")))
    _write(tmp_path, TWOWIKI_FILE, json.dumps([_twowiki(0, "inference")]))
    _write(tmp_path, POPQA_FILE, json.dumps([_popqa(0, "occupation")]))
    questions, docs = load_dataset("cwq", tmp_path, n=2, split=ALL)
    assert [(q.id, q.answers, q.gold_doc_ids) for q in questions] == [("0", ["a0", "alias0"], []),
                                                                      ("1", ["a1", "alias1"], [])]
    assert {"Gold bridge 0", "Gold inference 0", "Bridge", "Subject 0", "Politician"} <= {d.id for d in docs}
    assert {d.id for d in docs if d.title == "Shared"} == {"Shared", "Shared#2"}  # hotpotqa's and 2wiki's texts
    assert "union" in CORPUS_NOTE["cwq"]
    official = tmp_path / "ComplexWebQuestions_dev.json"  # the release's own format
    official.write_text(json.dumps([{"ID": "WebQ/1", "question": "q?", "answers": [
        {"answer": "Ada", "answer_id": "m.1", "aliases": ["Ada L.", "Ada"]}]}]))
    (q,), _ = load_dataset("cwq", tmp_path, n=5, path=official, split=ALL)
    assert (q.id, q.answers) == ("WebQ_1", ["Ada", "Ada L."])


def test_missing_and_malformed_files_name_the_file_and_the_fix(tmp_path):
    with pytest.raises(InputError, match=r"2wiki file .* not found; pass --data-dir .* docs/cli.md: Datasets"):
        load_dataset("2wiki", tmp_path, n=2)
    bad = _official(0, "bridge")
    bad["supporting_facts"] = [["Nowhere", 0]]
    (tmp_path / "bad.json").write_text(json.dumps([bad]))
    with pytest.raises(InputError, match=r"bad.json: row 0 is not a hotpotqa row .*Nowhere"):
        load_dataset("hotpotqa", tmp_path, n=2, path=tmp_path / "bad.json", split=ALL)
    with pytest.raises(InputError, match="is not known"):
        load_dataset("nq", tmp_path, n=2)


def test_question_type_round_trips_through_the_questions_file(tmp_path):
    questions = [Question("a", "Who?", ["Ada"], ["Doc"], "bridge"), Question("b", "Why?", ["So"])]
    write_questions(questions, tmp_path / "q.jsonl")
    assert load_questions(tmp_path / "q.jsonl") == questions


@needs_shared
def test_real_2wiki_popqa_and_cwq():
    questions, docs = load_dataset("2wiki", SHARED, n=8)
    assert sorted(q.qtype for q in questions) == sorted(["bridge_comparison", "comparison", "compositional",
                                                         "inference"] * 2)
    ids = {d.id for d in docs}
    assert len(ids) == len(docs) and all(q.gold_doc_ids and set(q.gold_doc_ids) <= ids for q in questions)
    questions, docs = load_dataset("popqa", SHARED, n=20)
    ids = {d.id for d in docs}
    assert len(questions) == 20 and all(q.answers and len(q.gold_doc_ids) == 2 and set(q.gold_doc_ids) <= ids
                                        for q in questions)
    questions, docs = load_dataset("cwq", SHARED, n=10)
    assert len(questions) == 10 and docs and all(q.answers and not q.gold_doc_ids for q in questions)


@needs_shared
def test_real_official_hotpotqa_matches_the_ircot_file():
    """The official release and IRCoT's file give the same questions and corpus for the same dev rows."""
    official = SHARED / "hotpotqa" / "hotpotqa_dev_distractor_first100_origformat.DERIVED.json"
    assert load_dataset("hotpotqa", SHARED, n=9, path=official, split=ALL) == load_dataset("hotpotqa", SHARED, n=9)
    assert set(DATASET_FILES) == {"hotpotqa", "2wiki", "popqa", "cwq"}


def test_splits_are_disjoint_halves_and_never_reach_the_reserved_rows(tmp_path):
    rows = [_row(i, "bridge") for i in range(7)] + [_row(i, "comparison") for i in range(7)]
    path = tmp_path / "h.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    three = Split("test", reserved=3)  # 7 rows per type: 2 test, 2 dev, the last 3 reserved
    assert [q.id for q in load_hotpotqa(path, n=99, split=three)[0]] == ["bridge0", "bridge1", "comparison0",
                                                                        "comparison1"]
    dev = Split("dev", reserved=3)
    assert [q.id for q in load_hotpotqa(path, n=99, split=dev)[0]] == ["bridge2", "bridge3", "comparison2",
                                                                      "comparison3"]
    with pytest.raises(InputError, match="--split 'reserved'"):
        Split("reserved")


@needs_shared
def test_real_splits_keep_the_headline_questions_and_hold_out_the_last_50_per_type():
    import itertools

    test, _ = load_dataset("hotpotqa", SHARED, n=400)
    dev, _ = load_dataset("hotpotqa", SHARED, n=400, split=Split("dev"))
    assert len(test) == len(dev) == 200 and not {q.id for q in test} & {q.id for q in dev}
    everything = [q for s in ("test", "dev") for q in load_dataset("hotpotqa", SHARED, n=500, split=Split(s, 0))[0]]
    everything.sort(key=lambda q: q.qtype)  # per type, in file order (the sort is stable)
    reserved = [q.id for t in ("bridge", "comparison") for q in [q for q in everything if q.qtype == t][-50:]]
    assert not set(reserved) & {q.id for q in test + dev}
    assert [q.id for q in load_dataset("hotpotqa", SHARED, n=100)[0]] == [q.id for q in test if q.qtype == "bridge"][
        :50] + [q.id for q in test if q.qtype == "comparison"][:50]  # the first n per type, as before splits
    for name, split in itertools.product(("2wiki", "popqa"), ("test", "dev")):
        assert load_dataset(name, SHARED, n=50, split=Split(split))[0]
