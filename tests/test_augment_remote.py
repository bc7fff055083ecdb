"""--augment-url: the LLM augmenter's text from an OpenAI-compatible server, here a live `polyprag serve`."""

import json
import socket

import pytest

from polyprag.text import augment
from polyprag.text.augment import REWRITE_PROMPT, augment_documents, chat_completions
from polyprag.cli import main
from polyprag.text.corpus import write_jsonl
from polyprag.errors import InputError
from polyprag.service.loadtest import live_server
from polyprag.service.serve import Limits, create_app
from serving import DOCS, build_kb


@pytest.fixture(scope="module")
def server(tiny_chat_model_dir, tmp_path_factory):
    """A real server on loopback answering closed-book with the tiny model, allowing the augmenter's 256 tokens."""
    folder = build_kb(tiny_chat_model_dir, tmp_path_factory.mktemp("remote") / "kb")
    with live_server(create_app(folder, limits=Limits(max_new_tokens=256))) as url:
        yield url


def test_the_augmentations_are_the_servers_replies(server):
    augs = augment_documents(DOCS[:2], "llm", url=server, model_name="closed-book", progress=False)
    replies = chat_completions(server, "closed-book", [REWRITE_PROMPT.format(passage=d.text) for d in DOCS[:2]],
                               progress=False)
    assert [a.doc_id for a in augs] == ["marlow", "velmark"]
    assert [a.rewrite for a in augs] == [r.strip() or d.text for r, d in zip(replies, DOCS[:2])]
    assert all(a.source in ("llm", "llm-failed+rules") and a.qa for a in augs)  # QA: parsed, or rules counted


def test_a_refusal_stops_at_once_and_says_why(server):
    with pytest.raises(InputError, match=r"refused .*HTTP 400.*no-such-mode.*--augment-model"):
        chat_completions(server, "no-such-mode", ["hello"], progress=False)


def test_a_dead_server_is_retried_then_named(monkeypatch):
    monkeypatch.setattr(augment, "REMOTE_RETRIES", 1)
    monkeypatch.setattr(augment.time, "sleep", lambda s: None)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with pytest.raises(InputError, match=r"127\.0\.0\.1.*no usable reply after 2 tries"):
        chat_completions(url, "m", ["hello"], progress=False)
    sock.close()


def test_cli_augments_through_the_server_and_refuses_the_url_with_rules(server, tmp_path, capsys):
    write_jsonl(DOCS[:1], tmp_path / "docs.jsonl")
    out = tmp_path / "aug.jsonl"
    argv = ["augment", str(tmp_path / "docs.jsonl"), "--out", str(out), "--augment-cache", str(tmp_path / "c.jsonl"),
            "--augment-url", server, "--augment-model", "closed-book"]
    assert main([*argv, "--augmenter", "rules"]) == 2
    assert "--augmenter llm --augment-url" in capsys.readouterr().out
    assert main([*argv, "--augmenter", "llm"]) == 0
    record = json.loads(out.read_text().splitlines()[0])
    assert record["doc_id"] == "marlow" and record["source"] in ("llm", "llm-failed+rules")
