"""Stored precision: bf16 (default) / int8 inventory and fp16 routing answer as they did before the save, and
a KB written before the choice (format 2, fp32, no "storage") still loads and answers as it did."""

import hashlib
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from polyprag.kb import storage
from polyprag.lm.adapters import InventoryConfig, mixing
from polyprag.text.corpus import Document
from polyprag.kb.knowledge import BuildConfig, KnowledgeBase
from polyprag.lm.models import load_model
from polyprag.lm.prompts import build_prompt
from polyprag.method.config import TrainConfig

DOCS = [Document("marlow", "Marlow Bridge", "Marlow Bridge was finished in 1862 by the engineer Ada Feld."),
        Document("velmark", "Velmark", "Velmark is a town on the river Tesk. It was founded in 1412 by Orrin Pell.")]
NEW = [Document("glass", "Glass harp", "The glass harp was invented in 1741 by Richard Pockrich in Dublin.")]
QUESTION = "Who finished Marlow Bridge?"


def config(precision: str) -> BuildConfig:
    return BuildConfig(inventory=InventoryConfig(n_adapters=4, rank=2), storage=precision,
                       training=TrainConfig(epochs=1, batch_size=4))


def logits(kb: KnowledgeBase, question: str = QUESTION) -> torch.Tensor:
    ids = kb.lm.tokenizer(build_prompt(kb.lm.tokenizer, question, shots=False), return_tensors="pt").input_ids
    with torch.no_grad(), mixing(kb.layers, kb.weights(kb.retrieve([question], 1), "poly")):
        return kb.lm.model(ids).logits  # (1, T, V)


@pytest.mark.parametrize("precision", storage.PRECISIONS)
def test_rounding_to_a_precision_twice_changes_nothing_and_stays_close(precision):
    torch.manual_seed(0)
    for t in (torch.randn(4, 3, 8) * 0.02, torch.randn(5, 6)):
        once = storage.rounded(t, precision)
        assert torch.equal(storage.rounded(once, precision), once)
        # bf16 keeps 8 significant bits; int8 a step of at most 2·max/127 per matrix, so an error ≤ max/127
        bound = t.abs() * 2 ** -8 if precision == "bf16" else t.abs().amax() / 127 + 1e-12
        assert ((once - t).abs() <= bound).all()
    assert storage.pack({"w": torch.ones(2, 2)}, "int8")["w"].dtype == torch.int8


@pytest.fixture
def lm(tiny_chat_model_dir):
    return lambda: load_model(str(tiny_chat_model_dir))  # a fresh base model for each KB


@pytest.mark.parametrize("precision,dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16), ("int8", torch.int8)])
def test_a_kb_answers_the_same_before_its_save_and_after_its_load(precision, dtype, lm, tmp_path):
    kb = KnowledgeBase.build(DOCS, lm(), config(precision), progress=False)
    before = logits(kb)
    kb.save(tmp_path / "kb")
    files = {name: load_file(tmp_path / "kb" / f"{name}.safetensors") for name in ("inventory", "routing")}
    assert {t.dtype for k, t in files["inventory"].items() if not k.endswith(storage.SCALE)} == {dtype}
    assert files["routing"]["logits"].dtype == (torch.float32 if precision == "fp32" else torch.float16)
    loaded = KnowledgeBase.load(tmp_path / "kb", lm())
    assert loaded.manifest.build.storage == precision
    with safe_open(tmp_path / "kb" / "inventory.safetensors", "pt") as f:  # keyed by module path, self-described
        assert "model.layers.0.mlp.gate_proj.lora_A" in f.keys()
        about = json.loads(f.metadata()["polyprag"])
        assert about["storage"] == precision and about["inventory"]["n_adapters"] == 4
    assert torch.equal(logits(loaded), before)


def test_smaller_storage_takes_the_bytes_it_promises(lm, tmp_path):
    payload, per_doc = {}, {}
    for precision in storage.PRECISIONS:
        kb = KnowledgeBase.build(DOCS, lm(), config(precision), progress=False)
        kb.save(tmp_path / precision)
        # tensor bytes, not file sizes: the tiny model's safetensors headers weigh as much as its tensors
        payload[precision] = sum(t.nbytes for t in load_file(tmp_path / precision / "inventory.safetensors").values())
        per_doc[precision] = kb.storage_bytes(tmp_path / precision)["routing_per_doc"]
        logits = load_file(tmp_path / precision / "routing.safetensors")["logits"]
        assert per_doc[precision] == logits[0].numel() * logits.element_size()
    assert payload["bf16"] * 2 == payload["fp32"]
    assert payload["int8"] < 0.3 * payload["fp32"]
    assert per_doc["bf16"] * 2 == per_doc["fp32"]


def test_an_int8_kb_grown_by_an_addition_keeps_its_old_answers_bit_for_bit(lm, tiny_chat_model_dir, tmp_path):
    kb = KnowledgeBase.build(DOCS, lm(), config("int8"), progress=False)
    kb.save(tmp_path / "kb")
    kb = KnowledgeBase.load(tmp_path / "kb", lm())
    before = logits(kb)
    kb.add(NEW, progress=False, grow=1)
    kb.save(tmp_path / "kb")
    loaded = KnowledgeBase.load(tmp_path / "kb", lm())
    assert torch.equal(logits(kb), before) and torch.equal(logits(loaded), before)


def test_a_format_2_kb_fp32_and_keyed_by_layer_index_loads_and_stays_fp32(lm, tiny_chat_model_dir, tmp_path):
    kb = KnowledgeBase.build(DOCS, lm(), config("fp32"), progress=False)
    before = logits(kb)
    kb.save(tmp_path / "kb")
    manifest_path = tmp_path / "kb" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    # As polyprag wrote it before stored precision was a choice: no "storage", tensors keyed by layer index
    del manifest["storage"]
    inventory = tmp_path / "kb" / "inventory.safetensors"
    paths = [layer.path for layer in kb.layers]
    save_file({f"{paths.index(k.rsplit('.', 1)[0])}.{k.rsplit('.', 1)[1]}": v for k, v in load_file(inventory).items()},
              inventory)
    manifest["files"]["inventory.safetensors"] = hashlib.sha256(inventory.read_bytes()).hexdigest()
    manifest_path.write_text(json.dumps({**manifest, "format_version": 2}))
    (tmp_path / "kb" / "manifest.sha256").unlink()  # format 2 had no sealed manifest
    old = KnowledgeBase.load(tmp_path / "kb", lm())
    assert torch.equal(logits(old), before)
    old.add(NEW, progress=False)
    old.save(tmp_path / "kb")
    assert load_file(tmp_path / "kb" / "routing.safetensors")["logits"].dtype == torch.float32
    assert json.loads(manifest_path.read_text())["format_version"] == 3
