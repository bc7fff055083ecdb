"""benchmarks/answer_form.py: F1 split into the answer's content (contains, recall) and its form (precision, words)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def form(bench_script):
    return bench_script("answer_form")


def test_measures_split_content_from_form(form):
    short = form.measures("Orla Pell", ["Orla Pell"])
    wordy = form.measures("the answer is Orla Pell of Velmark", ["Orla Pell"])
    assert short == {"f1": 100.0, "contains": 100.0, "recall": 100.0, "precision": 100.0, "words": 2.0}
    assert wordy["contains"] == wordy["recall"] == 100.0  # the same content ...
    assert wordy["precision"] == pytest.approx(100 * 2 / 6) and wordy["words"] == 6.0  # ... said at more length
    assert form.measures("no", ["yes"])["recall"] == 0.0  # HotpotQA's yes/no rule
    # the alias F1 scores best is the one recall and precision are read against
    assert form.measures("Pell", ["Orla Pell", "Pell"])["recall"] == 100.0


def _seed(run: Path, seed: int, answers: dict[str, list[str]]) -> None:
    folder = run / f"seed-{seed}"
    (folder / "methods").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"dataset": "hotpotqa", "model": "m", "split": "test"}))
    gold = ["Orla Pell", "1871"]
    for method, predicted in answers.items():
        preds = [{"id": str(i), "answers": [g], "prediction": p} for i, (g, p) in enumerate(zip(gold, predicted))]
        (folder / "methods" / f"{method}.json").write_text(json.dumps({"row": {"method": method}, "predictions": preds}))


def test_script_reports_a_lead_that_is_only_form(tmp_path):
    for seed in (0, 1):
        _seed(tmp_path, seed, {"rag": ["it was Orla Pell", "the year 1871"], "poly-combine": ["Orla Pell", "1871"]})
    out = tmp_path / "form.json"
    subprocess.run([sys.executable, str(BENCHMARKS / "answer_form.py"), str(tmp_path), "--json", str(out)],
                   check=True, capture_output=True, text=True)
    pair = json.loads(out.read_text())["pairs"][0]
    assert (pair["a"], pair["b"]) == ("poly-combine", "rag")
    assert pair["contains"]["diff"] == pair["recall"]["diff"] == 0.0
    assert pair["precision"]["diff"] > 0 and pair["words"]["diff"] == -1.5
    assert pair["words"]["ci95_seeds"] == pair["words"]["ci95"] == [-2.0, -1.0]  # the same answers every seed


def test_a_pair_is_read_over_the_seeds_both_rows_have(tmp_path):
    # dyprag has seed 0 only: poly − dyprag pairs seed 0 with seed 0, not poly's mean over its two seeds
    _seed(tmp_path, 0, {"poly": ["x", "x"], "dyprag": ["x", "x"]})
    _seed(tmp_path, 1, {"poly": ["Orla Pell", "1871"]})
    out = tmp_path / "form.json"
    subprocess.run([sys.executable, str(BENCHMARKS / "answer_form.py"), str(tmp_path), "--pairs", "poly:dyprag",
                    "--json", str(out)], check=True, capture_output=True, text=True)
    report = json.loads(out.read_text())
    assert report["means"]["poly"]["f1"] == 50.0  # the method's own row: its two seeds
    pair = report["pairs"][0]
    assert pair["seeds"] == [0] and pair["f1"]["diff"] == 0.0
