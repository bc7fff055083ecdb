"""benchmarks/same_predictions.py: identical answers of two runs, per method, and a failing exit when any differ."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "same_predictions.py"


def _result(path: Path, answers: dict[str, list[str]]) -> Path:
    path.write_text(json.dumps({"predictions": {m: [{"prediction": a} for a in xs] for m, xs in answers.items()}}))
    return path


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)


def test_counts_identical_answers_per_method_both_ran(tmp_path):
    before = _result(tmp_path / "a.json", {"poly": ["x", "y", "z"], "rag": ["r"], "prag": ["p"]})
    after = _result(tmp_path / "b.json", {"poly": ["x", "y", "w"], "rag": ["r"]})
    run = _run(before, after, "--json", tmp_path / "counts.json")
    assert run.returncode == 1 and "poly: 2/3 identical" in run.stdout and "rag: 1/1 identical" in run.stdout
    assert json.loads((tmp_path / "counts.json").read_text())["methods"]["poly"] == {"identical": 2, "questions": 3}


def test_exit_zero_only_when_every_answer_is_the_same(tmp_path):
    before = _result(tmp_path / "a.json", {"poly": ["x", "y"]})
    assert _run(before, _result(tmp_path / "b.json", {"poly": ["x", "y"]})).returncode == 0
    assert _run(before, _result(tmp_path / "c.json", {"poly": ["x"]})).returncode == 1  # a missing answer differs
