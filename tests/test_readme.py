"""The README's Quickstart runs as written: its shell block line by line and its Python block, on the tiny model
(the only changes: `--model` for the build, a smaller bench)."""

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from polyprag.cli import main
from polyprag.text.datasets import HOTPOTQA_FILE

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
SHARED = ROOT.parent / "shared" / "data"


def quickstart_lines() -> list[str]:
    """The commands of the Quickstart's shell block, comments dropped."""
    block = re.search(r"## Quickstart.*?```bash\n(.*?)```", README, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def polyprag(line: str, *extra: str) -> None:
    argv = shlex.split(line)
    assert argv[0] == "polyprag", line
    assert main([*argv[1:], *extra]) == 0, line


def test_the_quickstart_shell_block_runs_as_written(tiny_chat_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    lines = quickstart_lines()
    assert lines[0] == "source .venv/bin/activate" and "VENV := .venv" in (ROOT / "Makefile").read_text()
    for line in lines[1:]:
        if line.startswith("echo "):
            subprocess.run(["bash", "-c", line], check=True)
        elif line.startswith("polyprag build "):
            polyprag(line, "--model", str(tiny_chat_model_dir))
        elif line.startswith("polyprag serve "):  # the server itself: its app over the KB the lines built
            from polyprag.cli import _parser
            from polyprag.service.serve import create_app

            args = _parser().parse_args(shlex.split(line)[1:])
            health = TestClient(create_app(args.kb), base_url="http://127.0.0.1").get("/health")
            assert health.status_code == 200 and health.json()["n_docs"] == 31
        elif not line.startswith("polyprag bench "):  # bench needs ../shared/data: the next test
            polyprag(line)
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert manifest["n_docs"] == 31  # the sample's 30 + the one added
    assert "Quellmoor" in (tmp_path / "sample" / "docs.jsonl").read_text()


@pytest.mark.skipif(not (SHARED / HOTPOTQA_FILE).exists(), reason=f"needs ../shared/data ({SHARED}); CI has it")
def test_the_quickstart_bench_line_runs_on_a_small_slice(tiny_chat_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (line,) = [line for line in quickstart_lines() if line.startswith("polyprag bench ")]
    small = line.replace("--n 100", "--n 2").replace("--methods all", "--methods closed-book,rag,poly")
    polyprag(small, "--model", str(tiny_chat_model_dir), "--data-dir", str(SHARED), "--epochs", "1")
    assert (tmp_path / "runs" / "hp100" / "results.json").exists()


def test_the_readme_python_example_runs(tiny_chat_model_dir, tmp_path, monkeypatch, capsys):
    (code,) = re.findall(r"```python\n(.*?)```", README, re.S)
    monkeypatch.chdir(tmp_path)
    polyprag("polyprag export --dataset sample --out sample/")  # the Quickstart's first line
    code = code.replace('"smollm2-135m-instruct"', repr(str(tiny_chat_model_dir)))
    capsys.readouterr()
    exec(compile(code, "README.md", "exec"), {})
    assert len(capsys.readouterr().out.splitlines()) == 2  # two answers printed
    assert (tmp_path / "kb" / "manifest.json").exists()
