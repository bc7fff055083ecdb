"""benchmarks/seeds_table.py: mean and spread over runs that differ only in the seed."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "seeds_table.py"
spec = importlib.util.spec_from_file_location("seeds_table", SCRIPT)
seeds_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seeds_table)


def _run(folder: Path, seed: int, f1: dict[str, float], alpha: float = 32.0, entropy: float = 0.9) -> Path:
    folder.mkdir()
    config = {"model": "m", "methods": list(f1), "command": f"polyprag bench --seed {seed} --out {folder}",
              "build": {"inventory": {"alpha": alpha}, "training": {"seed": seed, "epochs": 2}}}
    rows = [{"method": m, "f1": v} for m, v in f1.items()]
    (folder / "results.json").write_text(json.dumps({"config": config, "rows": rows,
                                                     "routing": {"entropy_mean": entropy}}))
    return folder


def test_mean_and_sample_sd_of_the_methods_every_seed_ran(tmp_path):
    runs = [_run(tmp_path / "s0", 0, {"closed-book-bare": 20.0, "poly": 30.0, "poly-uniform": 25.0}, entropy=0.9),
            _run(tmp_path / "s1", 1, {"poly": 32.0, "poly-uniform": 21.0}, entropy=0.94),
            _run(tmp_path / "s2", 2, {"poly": 34.0, "poly-uniform": 23.0}, entropy=0.92)]
    t = seeds_table.table(runs, seeds_table.load(runs))
    assert t["seeds"] == [0, 1, 2]
    assert list(t["methods"]) == ["poly", "poly-uniform"]  # the bare reader ran in one seed only
    assert t["methods"]["poly"]["mean"] == pytest.approx(32.0) and t["methods"]["poly"]["sd"] == pytest.approx(2.0)
    assert t["methods"]["poly-uniform"]["f1"] == [25.0, 21.0, 23.0]
    assert t["entropy"]["mean"] == pytest.approx(0.92)
    assert "**32.0 ± 2.0**" in seeds_table.markdown(t)


def test_a_setting_added_after_a_run_is_not_a_difference(tmp_path):
    runs = [_run(tmp_path / "s0", 0, {"poly": 30.0}), _run(tmp_path / "s1", 1, {"poly": 31.0})]
    result = json.loads((runs[1] / "results.json").read_text())
    result["config"]["build"]["training"]["checkpoint_activations"] = False  # a newer setting, recorded by s1 only
    (runs[1] / "results.json").write_text(json.dumps(result))
    assert seeds_table.table(runs, seeds_table.load(runs))["methods"]["poly"]["mean"] == pytest.approx(30.5)


def test_runs_of_different_configurations_are_refused(tmp_path):
    runs = [_run(tmp_path / "s0", 0, {"poly": 30.0}), _run(tmp_path / "s1", 1, {"poly": 31.0}, alpha=8.0)]
    with pytest.raises(SystemExit, match="differs .* in more than the seed"):
        seeds_table.load(runs)
