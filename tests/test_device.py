"""Where the model runs: --device / --dtype, a bf16 base model with fp32 adapters, and KBs that move between
them (the fingerprint ignores dtype). On this CPU bf16 is exercised for real; CUDA only where a GPU is."""

import json
import shutil

import pytest
import torch

from polyprag.lm.adapters import inventory_state
from polyprag.cli import main
from polyprag.text.corpus import write_jsonl
from polyprag.errors import InputError
from polyprag.kb.knowledge import KnowledgeBase
from polyprag.kb.store import model_fingerprint
from polyprag.lm.models import load_model, resolve_device, resolve_dtype

from test_kb import CONFIG, DOCS, GEN

QUESTIONS = ["Who finished Marlow Bridge?", "When was Velmark founded?"]


@pytest.fixture(scope="module")
def bf16_kb(tiny_chat_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kb-bf16") / "kb"
    kb = KnowledgeBase.build(DOCS, load_model(str(tiny_chat_model_dir), dtype="bfloat16"), CONFIG, progress=False)
    kb.save(folder)
    return kb, folder


def test_a_bf16_model_trains_fp32_adapters(bf16_kb):
    kb, _ = bf16_kb
    assert kb.lm.model.dtype == torch.bfloat16
    assert all(l.lora_A.dtype == l.lora_B.dtype == torch.float32 for l in kb.layers)  # fp32 masters
    assert any(l.lora_B.abs().sum() > 0 for l in kb.layers)  # training reached them through the bf16 model
    losses = kb.manifest.loss_per_epoch
    assert all(loss == loss and loss < 50 for loss in losses)  # finite


def test_a_kb_built_in_bf16_loads_in_fp32_and_answers_alike(bf16_kb, tiny_chat_model_dir):
    kb, folder = bf16_kb
    fp32 = KnowledgeBase.load(folder, load_model(str(tiny_chat_model_dir), dtype="float32"))
    assert fp32.lm.model.dtype == torch.float32
    hits = kb.retrieve(QUESTIONS, 2)
    ids = kb.lm.tokenizer(QUESTIONS[0], return_tensors="pt").input_ids
    from polyprag.lm.adapters import mixing
    with mixing(kb.layers, kb.weights(hits, "poly")[:1]):
        low = kb.lm.model(ids).logits.float()
    with mixing(fp32.layers, fp32.weights(hits, "poly")[:1]):
        high = fp32.lm.model(ids).logits
    assert (low - high).norm() / high.norm() < 0.05  # bf16 rounding of the base model, not another model
    saved, trained = inventory_state(fp32.layers), inventory_state(kb.layers)
    assert all(torch.equal(saved[k], trained[k]) for k in trained)  # the fp32 masters, kept exactly
    assert len(fp32.answer(QUESTIONS, "poly", k=2, generation=GEN, progress=False)) == 2


def test_a_kb_written_with_the_legacy_fingerprint_loads_in_fp32_only(bf16_kb, tiny_chat_model_dir, tmp_path):
    _, folder = bf16_kb
    manifest = json.loads((folder / "manifest.json").read_text())
    old = load_model(str(tiny_chat_model_dir), dtype="float32")
    manifest["base_model"]["fingerprint"] = model_fingerprint(old.model, legacy=True)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "manifest.sha256").unlink(missing_ok=True)  # as a KB saved before manifests were sealed
    assert len(KnowledgeBase.load(folder, old).docs) == len(DOCS)
    with pytest.raises(InputError, match="--dtype float32"):
        KnowledgeBase.load(folder, load_model(str(tiny_chat_model_dir), dtype="bfloat16"))


def test_the_fingerprint_ignores_dtype_and_device_but_not_the_model(tiny_chat_model_dir, tiny_base_model_dir):
    a, b = (load_model(str(tiny_chat_model_dir), dtype=d).model for d in ("float32", "bfloat16"))
    assert model_fingerprint(a) == model_fingerprint(b)
    assert model_fingerprint(a) != model_fingerprint(load_model(str(tiny_base_model_dir)).model)


def test_the_fingerprint_ignores_the_folder_and_kbs_that_named_theirs_still_load(bf16_kb, tiny_chat_model_dir,
                                                                                tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(tiny_chat_model_dir, moved)  # the same model on another machine, or a bundled 16-bit copy
    here, there = load_model(str(tiny_chat_model_dir), dtype="float32"), load_model(str(moved))
    assert model_fingerprint(here.model) == model_fingerprint(there.model)
    assert model_fingerprint(here.model, with_folder=True) != model_fingerprint(there.model, with_folder=True)
    _, folder = bf16_kb
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["base_model"]["fingerprint"] = model_fingerprint(here.model, with_folder=True)  # as written before
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "manifest.sha256").unlink(missing_ok=True)
    assert len(KnowledgeBase.load(folder, here).docs) == len(DOCS)
    with pytest.raises(InputError, match="loads only from the model folder it was built with"):
        KnowledgeBase.load(folder, there)


@pytest.mark.parametrize("kwargs, message", [
    ({"device": "tpu"}, "--device 'tpu': choose cpu, cuda"),
    ({"dtype": "fp8"}, "--dtype 'fp8': choose from"),
])
def test_bad_device_or_dtype_is_named(tiny_chat_model_dir, kwargs, message):
    with pytest.raises(InputError, match=message):
        load_model(str(tiny_chat_model_dir), **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: cuda is not an error here")
def test_cuda_without_a_gpu_says_so_and_auto_falls_back():
    with pytest.raises(InputError, match="sees no CUDA GPU; use --device cpu"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"


def test_cli_builds_in_bf16_and_asks_in_fp32(tiny_chat_model_dir, tmp_path, capsys):
    write_jsonl(DOCS, tmp_path / "docs.jsonl")
    model, kb = ["--model", str(tiny_chat_model_dir)], str(tmp_path / "kb")
    assert main(["build", str(tmp_path / "docs.jsonl"), "--out", kb, "--adapters", "2", "--rank", "2", "--epochs",
                 "1", "--augment-cache", str(tmp_path / "c.jsonl"), "--device", "auto", "--dtype", "bfloat16",
                 *model]) == 0
    assert main(["ask", "--kb", kb, "--max-new-tokens", "3", QUESTIONS[0], *model]) == 0
    assert "1. marlow" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["ask", "--kb", kb, "--dtype", "fp8", QUESTIONS[0], *model])
    assert e.value.code == 2
    assert "invalid choice: 'fp8'" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run where one is visible)")
def test_a_kb_trains_and_answers_on_cuda_in_bf16_and_loads_on_the_cpu(tiny_chat_model_dir, tmp_path):
    gpu = KnowledgeBase.build(DOCS, load_model(str(tiny_chat_model_dir), "cuda", "bfloat16"), CONFIG, progress=False)
    assert all(l.lora_A.is_cuda and l.lora_A.dtype == torch.float32 for l in gpu.layers)
    assert any(l.lora_B.abs().sum() > 0 for l in gpu.layers)
    answers = gpu.answer(QUESTIONS, "poly-combine", k=2, generation=GEN, progress=False)
    assert len(answers) == 2
    gpu.save(tmp_path / "kb")
    cpu = KnowledgeBase.load(tmp_path / "kb", load_model(str(tiny_chat_model_dir), dtype="float32"))
    saved, trained = inventory_state(cpu.layers), inventory_state(gpu.layers)
    assert all(torch.equal(saved[k], trained[k]) for k in trained)


def test_auto_dtype_is_bfloat16_only_where_it_is_native(monkeypatch):
    assert resolve_dtype("float32", "cuda") == "float32" and resolve_dtype("bfloat16", "cpu") == "bfloat16"
    assert resolve_dtype("auto", "cuda:1") == "bfloat16"
    for native, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
        assert resolve_dtype("auto", "cpu") == expected
    assert resolve_dtype("auto", "mps") == "float32"


def test_every_command_runs_in_auto_dtype_unless_told(tmp_path):
    from polyprag.cli import _parser as build_parser

    assert build_parser().parse_args(["serve", str(tmp_path)]).dtype == "auto"
    assert build_parser().parse_args(["ask", "Who?", "--kb", str(tmp_path)]).dtype == "auto"
    assert build_parser().parse_args(["build", "c.jsonl", "--out", str(tmp_path)]).dtype == "auto"
    assert build_parser().parse_args(["serve", str(tmp_path), "--dtype", "float32"]).dtype == "float32"
