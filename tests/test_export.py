"""export-lora: a question's mixture written as a PEFT LoRA folder gives, loaded by PEFT on a fresh base
model, the same logits as polyprag's own poly mode (poly and delta mixing, a shared adapter, summed mixtures)."""

import json
from dataclasses import replace

import pytest
import torch

from polyprag.lm.adapters import InventoryConfig, mixing
from polyprag.cli import main
from polyprag.kb.export import export_lora
from polyprag.kb.knowledge import KnowledgeBase
from polyprag.lm.models import load_model
from polyprag.lm.prompts import build_prompt

from test_kb import CONFIG, DOCS

QUESTION = "Who finished Marlow Bridge?"


@pytest.mark.parametrize("inventory, combine", [
    (InventoryConfig(n_adapters=4, rank=2), "mean"),
    (InventoryConfig(n_adapters=4, rank=2, shared=True), "sum"),
    (InventoryConfig(n_adapters=3, rank=2, mixing="delta"), "mean"),
    (InventoryConfig(n_adapters=4, rank=2, heads=2), "sum"),
])
def test_the_exported_lora_gives_polyprags_logits(tiny_chat_model_dir, tmp_path, inventory, combine):
    from peft import PeftModel

    kb = KnowledgeBase.build(DOCS, load_model(str(tiny_chat_model_dir), dtype="float32"), replace(CONFIG, inventory=inventory,
                                                                                  combine=combine), progress=False)
    with torch.no_grad():  # adapters far from zero, so that a wrong export cannot pass unnoticed
        for layer in kb.layers:
            layer.lora_B.normal_(0, 0.3)
    hits = kb.retrieve([QUESTION], 2)
    weights = kb.mixing_weights(hits)  # (1, G·H, M), or (1, G·H, K, M) summed
    weights = torch.rand_like(weights) * (weights != 0)  # every head and layer its own mixture: a wrong block fails
    config = export_lora(kb.lm.model, weights[0], tmp_path / "lora", str(tiny_chat_model_dir))
    ids = kb.lm.tokenizer(build_prompt(kb.lm.tokenizer, QUESTION, shots=False), return_tensors="pt").input_ids
    with torch.no_grad(), mixing(kb.layers, weights):
        ours = kb.lm.model(ids).logits
    peft = PeftModel.from_pretrained(load_model(str(tiny_chat_model_dir), dtype="float32").model, str(tmp_path / "lora")).eval()
    with torch.no_grad():
        theirs = peft(ids).logits
        with peft.disable_adapter():
            base = peft(ids).logits
    assert torch.allclose(theirs, ours, atol=1e-4), (theirs - ours).abs().max()
    assert not torch.allclose(base, ours, atol=1e-2)  # the adapter does change the model
    k = weights.shape[2] if weights.dim() == 4 else 1  # summed mixtures concatenate
    assert config["r"] == {"poly": 2, "delta": 3 * 2}[inventory.mixing] * k + 2 * inventory.shared


def test_cli_exports_for_a_question_or_documents_and_names_unknown_ids(tiny_chat_model_dir, tmp_path, capsys):
    kb = KnowledgeBase.build(DOCS, load_model(str(tiny_chat_model_dir), dtype="float32"), CONFIG, progress=False)
    kb.save(tmp_path / "kb")
    base = ["-q", "export-lora", str(tmp_path / "kb"), "--model", str(tiny_chat_model_dir)]
    assert main([*base, "--question", QUESTION, "--out", str(tmp_path / "q")]) == 0
    assert "rank-2 LoRA on 6 modules" in " ".join(capsys.readouterr().out.split())
    assert main([*base, "--docs", "marlow,velmark", "--out", str(tmp_path / "d")]) == 0
    config = json.loads((tmp_path / "d" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and (tmp_path / "d" / "adapter_model.safetensors").exists()
    assert main([*base, "--docs", "marlow,atlantis", "--out", str(tmp_path / "x")]) == 2
    assert "['atlantis'] not in" in " ".join(capsys.readouterr().out.split()) and not (tmp_path / "x").exists()
