"""benchmarks/storage_scale.py on the tiny model: real files on disk, sizes that add up."""

import importlib.util
from pathlib import Path

from polyprag.text.corpus import Document
from polyprag.kb.knowledge import BuildConfig, KnowledgeBase
from polyprag.lm.models import load_model
from polyprag.method.config import TrainConfig

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "storage_scale.py"
spec = importlib.util.spec_from_file_location("storage_scale", SCRIPT)
storage_scale = importlib.util.module_from_spec(spec)
spec.loader.exec_module(storage_scale)

DOCS = [Document(f"d{i}", f"Town {i}", f"Town {i} lies on the river Tesk. It was founded in {1800 + i}.")
        for i in range(6)]


def test_routing_grows_by_one_row_per_document_and_the_inventory_stays(tiny_chat_model_dir, tmp_path):
    small = storage_scale.poly_sizes(str(tiny_chat_model_dir), DOCS[:2], "fine", tmp_path / "a")
    large = storage_scale.poly_sizes(str(tiny_chat_model_dir), DOCS, "fine", tmp_path / "b")
    coarse = storage_scale.poly_sizes(str(tiny_chat_model_dir), DOCS, "coarse", tmp_path / "c")
    assert small["inventory"] == large["inventory"] == coarse["inventory"]
    assert large["routing"] - small["routing"] == 4 * large["routing_per_doc"]
    layers = 2 * 3  # the tiny model's 2 layers × gate/up/down
    assert large["routing_per_doc"] == layers * coarse["routing_per_doc"] == layers * 20 * 2  # fp16 routing logits


def test_one_prag_adapter_is_a_real_peft_folder(tiny_chat_model_dir, tmp_path):
    size = storage_scale.prag_bytes_per_doc(str(tiny_chat_model_dir), DOCS[0], tmp_path)
    saved = tmp_path / "prag" / "0" / "adapter_model.safetensors"
    assert saved.exists() and size > saved.stat().st_size  # the weights plus PEFT's config and README


def test_a_trained_kb_has_the_sizes_measured_untrained(tiny_chat_model_dir, tmp_path):
    rows = [{"routing": "fine", "inventory_bytes": storage_scale.poly_sizes(
        str(tiny_chat_model_dir), DOCS, "fine", tmp_path / "u")["inventory"], "poly_bytes_per_doc": 6 * 20 * 2}]
    kb = KnowledgeBase.build(DOCS[:3], load_model(str(tiny_chat_model_dir)),
                             BuildConfig(training=TrainConfig(epochs=1)), progress=False)
    kb.save(tmp_path / "trained")
    assert storage_scale.check_trained(tmp_path / "trained", rows)["matches"]
    rows[0]["inventory_bytes"] += 1
    assert not storage_scale.check_trained(tmp_path / "trained", rows)["matches"]
