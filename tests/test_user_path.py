"""What bench measures is what a user runs: bench's poly rows answer exactly as `polyprag build` + `polyprag eval`
at the same settings, on the same documents and questions (the evidence issue: "benchmark what a user runs")."""

import json

import torch
from safetensors.torch import load_file

from polyprag.cli import main
from polyprag.commands import SAMPLE

SETTINGS = ["--epochs", "1", "--adapters", "2", "--rank", "2", "--max-new-tokens", "4", "--max-qa", "2"]


def test_bench_poly_rows_answer_as_build_then_eval_do(tiny_chat_model_dir, tmp_path):
    model = ["--model", str(tiny_chat_model_dir)]
    docs, questions = str(SAMPLE / "docs.jsonl"), tmp_path / "questions.jsonl"
    lines = (SAMPLE / "questions.jsonl").read_text(encoding="utf-8").splitlines()[:4]
    questions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    modes = "poly,poly-combine,poly-uniform"

    assert main(["-q", "bench", "--corpus", docs, "--questions", str(questions), "--n", "4", "--corpus-mode", "closed",
                 "--methods", modes, *model, *SETTINGS, "--augment-cache", str(tmp_path / "bench-cache.jsonl"),
                 "--out", str(tmp_path / "run")]) == 0
    assert main(["-q", "build", docs, "--out", str(tmp_path / "kb"), *model, *SETTINGS,
                 "--augment-cache", str(tmp_path / "build-cache.jsonl")]) == 0
    assert main(["-q", "eval", "--kb", str(tmp_path / "kb"), "--questions", str(questions), "--modes", modes, *model,
                 "--max-new-tokens", "4", "--json", str(tmp_path / "eval.json")]) == 0

    bench = json.loads((tmp_path / "run" / "results.json").read_text())["predictions"]
    user = json.loads((tmp_path / "eval.json").read_text())["predictions"]
    for mode in modes.split(","):
        for key in ("id", "retrieved", "raw", "prediction"):
            assert [p[key] for p in bench[mode]] == [p[key] for p in user[mode]], (mode, key)
    for name in ("inventory.safetensors", "routing.safetensors"):  # the same knowledge base, tensor for tensor
        ours, theirs = load_file(tmp_path / "run" / "kb" / name), load_file(tmp_path / "kb" / name)
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name
