"""The README's Python quickstart runs as written, on the tiny model and a small corpus."""

import re
from pathlib import Path

from polyprag.corpus import Document, write_jsonl

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tiny_chat_model_dir, tmp_path, monkeypatch, capsys):
    (code,) = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    write_jsonl([Document("marlow", "Marlow Bridge", "Marlow Bridge was finished in 1862 by Ada Feld."),
                 Document("velmark", "Velmark", "Velmark is a town on the river Tesk.")], tmp_path / "docs.jsonl")
    monkeypatch.chdir(tmp_path)
    code = code.replace('"smollm2-135m-instruct"', repr(str(tiny_chat_model_dir)))
    exec(compile(code, str(README), "exec"), {})
    assert len(capsys.readouterr().out.splitlines()) == 2  # two answers printed
    assert (tmp_path / "kb" / "manifest.json").exists()
