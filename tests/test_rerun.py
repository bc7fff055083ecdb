"""benchmarks/rerun.py: the answer-only scripts reopen a finished bench run, a run on your own files included."""

import argparse
import json
import sys
from pathlib import Path

import pytest

from polyprag.cli import main
from polyprag.commands import SAMPLE

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def rerun(bench_script):
    return bench_script("rerun")


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


def test_the_strength_rule_averages_seeds_then_corpora(bench_script, monkeypatch, tmp_path, capsys):
    strength_table = bench_script("strength_table")

    f1 = {"briefs": [{0.5: 60.0, 1.0: 50.0}, {0.5: 40.0, 1.0: 50.0}], "hotpotqa": [{0.5: 30.0, 1.0: 34.0}]}
    for corpus, seeds in f1.items():
        for seed, rows in enumerate(seeds):
            folder = tmp_path / corpus / f"seed-{seed}"
            folder.mkdir(parents=True)
            (folder / "adapter-strength.json").write_text(json.dumps(
                [{"method": f"poly-combine (s={s:g})", "f1": v} for s, v in rows.items()]))
    monkeypatch.setattr(sys, "argv", ["strength_table.py", str(tmp_path / "briefs"), str(tmp_path / "hotpotqa")])
    strength_table.main()
    out = capsys.readouterr().out
    assert "| 0.5 | 50.0 (2) | 30.0 (1) | 40.0 |" in out and "| 1 | 50.0 (2) | 34.0 (1) | 42.0 |" in out
    assert out.rstrip().endswith("The rule's choice: 1")
    (tmp_path / "hotpotqa" / "seed-0" / "adapter-strength.json").write_text(json.dumps(
        [{"method": "poly-combine (s=0.5)", "f1": 30.0}]))  # a strength missing from a seed: no choice
    with pytest.raises(SystemExit, match="seeds per strength"):
        strength_table.main()
