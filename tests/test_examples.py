"""examples/ run as written, on the tiny model (POLYPRAG_EXAMPLE_MODEL) and the bundled sample."""

import runpy
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(name: str, monkeypatch, tiny: Path, *args: str) -> None:
    monkeypatch.setenv("POLYPRAG_EXAMPLE_MODEL", str(tiny))
    monkeypatch.setattr("sys.argv", [name, *args])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


def test_every_example_has_a_test():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == ["build_and_ask.py", "compare_on_sample.py",
                                                              "rag_in_ten_lines.py"]


def test_rag_in_ten_lines(tiny_chat_model_dir, monkeypatch, capsys):
    run("rag_in_ten_lines.py", monkeypatch, tiny_chat_model_dir)
    out = capsys.readouterr().out
    assert out.startswith("In which year did Quellmoor obtain its town charter? -> ") and "quellmoor-town" in out


def test_build_and_ask(tiny_chat_model_dir, monkeypatch, capsys, tmp_path):
    run("build_and_ask.py", monkeypatch, tiny_chat_model_dir, str(tmp_path / "kb"))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in lines[:3]] == ["poly", "poly-combine", "poly-uniform"]
    assert (tmp_path / "kb" / "manifest.json").exists()


@pytest.mark.filterwarnings("ignore::UserWarning")  # PEFT's notes about the tiny model
def test_compare_on_sample(tiny_chat_model_dir, monkeypatch, capsys, tmp_path):
    run("compare_on_sample.py", monkeypatch, tiny_chat_model_dir, str(tmp_path / "bench"))
    methods = [line.split(":")[0].strip() for line in capsys.readouterr().out.splitlines() if ": F1" in line]
    assert methods == ["closed-book-bare", "rag", "prag", "poly", "poly-shuffled"]
    assert (tmp_path / "bench" / "results.json").exists()
