"""benchmarks/rerun.py: the answer-only scripts reopen a finished bench run, a run on your own files included."""

import argparse
import sys
from pathlib import Path

import pytest

from polyprag.cli import main
from polyprag.commands import SAMPLE

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def rerun(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import rerun

    yield rerun
    sys.modules.pop("rerun", None)


def test_a_run_on_your_own_files_reopens_with_the_same_files_named(rerun, tiny_chat_model_dir, tmp_path):
    out = tmp_path / "run"
    files = ["--corpus", str(SAMPLE / "docs.jsonl"), "--questions", str(SAMPLE / "questions.jsonl")]
    assert main(["-q", "bench", *files, "--n", "2", "--methods", "poly", "--model", str(tiny_chat_model_dir),
                 "--epochs", "1", "--max-new-tokens", "2", "--adapters", "2", "--rank", "2",
                 "--corpus-mode", "closed", "--out", str(out)]) == 0

    with pytest.raises(SystemExit, match="pass the same --corpus and --questions"):
        rerun.finished_run(argparse.Namespace(run=str(out), data_dir="unused", corpus=None, questions=None))
    run = rerun.finished_run(argparse.Namespace(run=str(out), data_dir="unused", corpus=files[1], questions=files[3]))
    assert len(run.work.questions) == 2  # the run's n, not the file's length
    assert len(run.kb.docs) == len(run.work.docs)  # closed corpus: every document, as the run encoded them
