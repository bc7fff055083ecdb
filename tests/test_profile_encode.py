"""benchmarks/profile_encode.py on the tiny model: both trainings profiled, their time split into groups."""

import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "profile_encode.py"
spec = importlib.util.spec_from_file_location("profile_encode", SCRIPT)
profile_encode = importlib.util.module_from_spec(spec)
spec.loader.exec_module(profile_encode)


def test_operators_are_grouped_by_name_and_vocabulary_wide_shapes():
    assert profile_encode.group("aten::mm", [[4, 64], [64, 5000]], vocab=5000) == "output head (vocabulary-wide)"
    assert profile_encode.group("aten::mm", [[4, 64], [64, 128]], vocab=5000) == "model matmuls"
    assert profile_encode.group("aten::bmm", [[4, 3, 64], [4, 64, 4]], vocab=5000) == "adapters (mixing einsums)"
    assert profile_encode.group("Optimizer.step#AdamW.step", [], vocab=5000) == "optimiser"
    assert profile_encode.group("aten::_log_softmax", [[4, 7]], vocab=5000) == "output head (vocabulary-wide)"


def test_both_trainings_are_profiled_on_the_same_samples(tiny_chat_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["profile_encode.py", "--model", str(tiny_chat_model_dir), "--docs", "2",
                                      "--out", str(tmp_path)])
    profile_encode.main()
    r = json.loads((tmp_path / "profile-encode.json").read_text())
    assert r["docs"] == 2 and r["samples"] >= 2
    for name in ("poly", "prag"):
        groups = r[name]["groups_s"]
        assert r[name]["wall_s"] > 0 and groups["output head (vocabulary-wide)"] > 0 and groups["model matmuls"] > 0
        assert sum(groups.values()) <= r[name]["wall_s"] * 2.5  # self times on 2 threads: at most ~2× the wall
    assert r["poly"]["groups_s"]["adapters (mixing einsums)"] > 0  # PRAG's PEFT LoRA runs as plain linears
    assert "poly:" in capsys.readouterr().out
