"""The `polyprag` command end to end on the tiny model: ask, eval (own data), clear errors."""

import json
import os

import pytest

from polyprag.cli import ONEDNN_CACHE, main
from polyprag.commands import DEMO_DOCS, demo_sample
from polyprag.text.corpus import Document, write_jsonl

DOCS = [Document("marlow", "Marlow Bridge", "A stone arch bridge over the river Tesk, finished in 1862 by Ada Feld."),
        Document("velmark", "Velmark", "Velmark is a town on the river Tesk known for its canals and mills."),
        Document("glass", "Glass harp", "A glass harp is played by rubbing wet fingers on glasses.")]
QUESTIONS = [{"id": "q1", "question": "Who finished the Marlow Bridge?", "answers": ["Ada Feld"], "gold_doc_ids": ["marlow"]},
             {"id": "q2", "question": "What is Velmark known for?", "answers": ["canals", "mills"], "gold_doc_ids": ["velmark"]}]


@pytest.fixture
def data(tmp_path):
    write_jsonl(DOCS, tmp_path / "docs.jsonl")
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(q) for q in QUESTIONS) + "\n")
    return tmp_path


def test_ask_prints_answer_and_retrieved_passages(data, tiny_chat_model_dir, capsys):
    rc = main(["ask", "--corpus", str(data / "docs.jsonl"), "--model", str(tiny_chat_model_dir),
               "--max-new-tokens", "4", "Who finished the Marlow Bridge?"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "model output: The answer is" in out
    assert "1. marlow" in out  # BM25's best passage, listed first


def test_eval_on_own_data_writes_the_json_schema(data, tiny_chat_model_dir):
    out = data / "res" / "out.json"
    rc = main(["eval", "--corpus", str(data / "docs.jsonl"), "--questions", str(data / "q.jsonl"),
               "--model", str(tiny_chat_model_dir), "--modes", "closed-book,rag,rag-gold", "--k", "1",
               "--max-new-tokens", "4", "--json", str(out)])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["config"]["k"] == 1 and result["config"]["n_questions"] == 2
    assert [r["method"] for r in result["rows"]] == ["closed-book", "rag", "rag-gold"]
    for row in result["rows"]:
        assert {"method", "n", "em", "f1", "acc", "recall_at_k", "latency_p50_s"} <= row.keys()
        assert 0 <= row["f1"] <= 100 and row["n"] == 2
    assert result["rows"][1]["recall_at_k"] == 1.0  # both questions name their document
    assert result["predictions"]["rag"][0]["retrieved"] == ["marlow"]


@pytest.mark.parametrize("argv, message", [
    (["ask", "--mode", "rag", "Who?"], "--mode rag needs --corpus"),
    (["eval", "--questions", "q.jsonl"], "--corpus and --questions go together"),
    (["eval"], "pass either --dataset"),
    (["eval", "--dataset", "hotpotqa", "--n", "0"], "--n 0"),
    (["eval", "--dataset", "hotpotqa", "--data-dir", "/nonexistent"], "not found"),
    (["ask", "--corpus", "/nonexistent.jsonl", "Who?"], "/nonexistent.jsonl"),
    (["ask", "--mode", "closed-book", "--model", "no-such-model", "Who?"], "resolves to nothing"),
    (["demo", "--n-docs", "31"], "--n-docs 31: the sample holds 30 documents"),
])
def test_bad_input_is_one_clear_error_and_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().out


@pytest.mark.parametrize("n", [1, DEMO_DOCS, 30])
def test_the_demo_asks_only_what_its_documents_answer(n):
    docs, questions = demo_sample(n)
    ids = [d.id for d in docs]
    assert len(docs) == n and ids == [d.id for d in demo_sample(30)[0][:n]]
    assert len(questions) == 2 * n  # the sample's two questions per document, none about a document left out
    assert all(set(q.gold_doc_ids) <= set(ids) for q in questions)


@pytest.mark.parametrize("command", [["build", "DOCS"], ["bench", "--dataset", "sample"], ["export", "--dataset", "sample"],
                                     ["add", "KB", "DOCS"]])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(data, tmp_path, command, capsys, monkeypatch):
    """An --out (or a knowledge base) under a file, not a folder: refused at once, naming it (a build used to train
    a whole epoch, then fail to write its checkpoint with a traceback). Root may write anywhere, so not chmod."""
    import polyprag.commands

    def never(*a, **k):
        raise AssertionError("no model may load for a path that cannot be written")

    monkeypatch.setattr(polyprag.commands, "load_lm", never, raising=False)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = blocker / "kb"
    argv = [str(data / "docs.jsonl") if a == "DOCS" else str(out) if a == "KB" else a for a in command]
    argv += ["--out", str(out)] if command[0] != "add" else []
    assert main(argv) == 2
    said = " ".join(capsys.readouterr().out.split())
    assert ("--out" if command[0] != "add" else "the knowledge base") in said and str(blocker) in said
    assert "cannot write" in said and not out.exists()


def test_outputs_written_into_a_folder_check_that_folder(tmp_path):
    """bench and export write files into --out: the folder itself is checked (an --out in a folder whose parent a
    user may not write, /tmp for one, works); a KB or a file is replaced beside it: its parent is checked."""
    from polyprag.atomic import check_writable
    from polyprag.errors import InputError

    a_file = tmp_path / "results"
    a_file.write_text("")
    check_writable(a_file, "--out")  # replaced beside it: tmp_path takes files
    with pytest.raises(InputError, match="--out .*cannot write in"):
        check_writable(a_file, "--out", inside=True)  # written into: a file is no folder
    check_writable(tmp_path / "new" / "run", "--out", inside=True)  # the nearest folder that exists


def test_a_refused_build_leaves_no_folder_behind(data, tmp_path):
    """The check of --out creates nothing: a build refused for another reason leaves the new folders unmade."""
    assert main(["build", str(data / "docs.jsonl"), "--out", str(tmp_path / "new" / "kb"), "--adapters", "0"]) == 2
    assert not (tmp_path / "new").exists()


def test_a_file_system_error_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    import polyprag.cli as cli

    def gone(args):
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "removed.jsonl"))

    monkeypatch.setattr(cli, "cmd_export", gone)
    assert main(["export", "--dataset", "sample", "--out", str(tmp_path / "x")]) == 1
    assert f"{tmp_path / 'removed.jsonl'}: No such file or directory" in " ".join(capsys.readouterr().out.split())


def test_unknown_mode_is_refused_before_loading_a_model(data, capsys):
    rc = main(["eval", "--corpus", str(data / "docs.jsonl"), "--questions", str(data / "q.jsonl"),
               "--modes", "closed-book,telepathy", "--model", "no-such-model"])
    assert rc == 2
    assert "telepathy" in capsys.readouterr().out


def test_the_cli_caps_onednns_primitive_cache_unless_the_user_set_it(tmp_path, monkeypatch):
    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    assert main(["-q", "export", "--dataset", "sample", "--out", str(tmp_path / "a")]) == 0
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == str(ONEDNN_CACHE)
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "1024")  # the user's own value wins
    assert main(["-q", "export", "--dataset", "sample", "--out", str(tmp_path / "b")]) == 0
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "1024"


def test_cli_reference_is_current():
    """docs/cli-reference.md is what docs/cli_reference.py writes from the parser: no command or flag undocumented."""
    import importlib.util
    from pathlib import Path
    script = Path(__file__).parents[1] / "docs" / "cli_reference.py"
    spec = importlib.util.spec_from_file_location("cli_reference", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.OUT.read_text() == module.reference(), \
        "docs/cli-reference.md is stale: run .venv/bin/python docs/cli_reference.py and commit it"


def test_a_markdown_table_prints_one_row_a_line_when_stdout_is_a_file(capsys):
    from polyprag.commands import print_markdown
    row = "| encode s/doc: poly vs prag at the protocol's 4 epochs, its own data recipe " + "x" * 300 + " | 0.75× |"
    print_markdown("| measure | value |\n|---|---|\n" + row)
    assert capsys.readouterr().out.splitlines() == ["| measure | value |", "|---|---|", row]
