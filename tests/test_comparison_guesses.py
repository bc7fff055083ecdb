"""benchmarks/comparison_guesses.py: how a method answers comparison questions, from its predictions."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "comparison_guesses.py"
spec = importlib.util.spec_from_file_location("comparison_guesses", SCRIPT)
comparison_guesses = importlib.util.module_from_spec(spec)
spec.loader.exec_module(comparison_guesses)


def _p(answer: str, prediction: str, qtype: str = "comparison") -> dict:
    return {"answers": [answer], "prediction": prediction, "qtype": qtype}


def test_yes_no_calls_and_the_other_comparisons_apart_bridge_ignored():
    g = comparison_guesses.guesses([
        _p("yes", "Yes, both are."), _p("no", "yes"), _p("no", "No."), _p("Yes", "The answer is no"),
        _p("Alice Smith", "Alice Smith"), _p("Bob", "Carol"),
        _p("Paris", "Paris", qtype="bridge")])
    assert (g["yes_no"], g["gold_yes"], g["says_yes"], g["right"]) == (4, 2, 2, 2)
    assert g["other"] == 2
    assert g["other_em"] == pytest.approx(50.0) and g["other_f1"] == pytest.approx(50.0)


def test_every_finished_row_of_a_seed_folder_is_printed(tmp_path, capsys, monkeypatch):
    (tmp_path / "methods").mkdir()
    for method, prediction in (("poly", "yes"), ("poly-shuffled", "no")):
        (tmp_path / "methods" / f"{method}.json").write_text(json.dumps({"predictions": [_p("no", prediction)]}))
    monkeypatch.setattr("sys.argv", ["comparison_guesses.py", str(tmp_path)])
    comparison_guesses.main()
    out = capsys.readouterr().out
    assert "| poly | 1 | 0 |" in out and "| poly-shuffled | 0 | 1 |" in out


def test_a_folder_without_rows_names_what_to_pass(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["comparison_guesses.py", str(tmp_path)])
    with pytest.raises(SystemExit, match="no finished rows"):
        comparison_guesses.main()
