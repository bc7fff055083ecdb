"""PRAG baseline: per-document PEFT LoRAs, saved per document, summed with PEFT's "cat" combination."""

import pytest
import torch

from polyprag.errors import InputError
from polyprag.lm.generate import GenerationConfig
from polyprag.text.augment import Sample
from polyprag.text.corpus import Document
from polyprag.lm.models import load_model
from polyprag.baselines.prag import PragAdapters, PragConfig

SAMPLES = [Sample(0, "Who built Marlow Bridge?", "Ada Feld"), Sample(0, "When was Marlow Bridge finished?", "1862"),
           Sample(1, "Who founded Velmark?", "Orrin Pell")]
CONFIG = PragConfig(lr=1e-2, epochs=2)
DOCS = [Document("marlow", "Marlow Bridge", "Ada Feld built Marlow Bridge in 1862."),
        Document("velmark", "Velmark", "Orrin Pell founded Velmark.")]


def _delta(prag, layer, x, docs):
    with prag._merged(docs):
        return layer(x) - layer.base_layer(x)


def test_each_document_gets_its_own_saved_adapter_and_cat_sums_them(tiny_chat_model_dir, tmp_path):
    prag = PragAdapters(load_model(str(tiny_chat_model_dir), dtype="float32"), CONFIG, tmp_path / "prag")
    per_doc = prag.encode(SAMPLES, DOCS, progress=False)
    assert per_doc > 0
    assert all((tmp_path / "prag" / str(d) / "adapter_model.safetensors").exists() for d in (0, 1))
    assert prag.storage_bytes(2) > 0
    layer = next(m for n, m in prag.model.named_modules() if n.endswith("mlp.up_proj"))
    x = torch.randn(1, 3, layer.base_layer.in_features)
    with torch.no_grad():
        d0, d1, both = _delta(prag, layer, x, [0]), _delta(prag, layer, x, [1]), _delta(prag, layer, x, [0, 1])
    assert d0.abs().max() > 1e-4 and not torch.allclose(d0, d1)  # trained, and per document
    assert torch.allclose(both, d0 + d1, atol=1e-5)  # PRAG's combination: the sum of the LoRA updates
    with torch.no_grad():
        assert torch.equal(_delta(prag, layer, x, []), torch.zeros_like(d0))  # no documents: the base model


def test_encoding_resumes_without_retraining_saved_documents(tiny_chat_model_dir, tmp_path):
    prag = PragAdapters(load_model(str(tiny_chat_model_dir), dtype="float32"), CONFIG, tmp_path / "prag")
    prag.encode(SAMPLES, DOCS, progress=False)
    saved = (tmp_path / "prag" / "0" / "adapter_model.safetensors").stat().st_mtime_ns
    prag.encode(SAMPLES, DOCS, progress=False)
    assert (tmp_path / "prag" / "0" / "adapter_model.safetensors").stat().st_mtime_ns == saved


def test_a_resume_on_other_documents_or_settings_is_refused(tiny_chat_model_dir, tmp_path):
    """Adapters are reused by index: a folder trained on other documents or settings must not be resumed."""
    lm = load_model(str(tiny_chat_model_dir), dtype="float32")
    PragAdapters(lm, CONFIG, tmp_path / "prag").encode(SAMPLES, DOCS, progress=False)
    other = [DOCS[0], Document("velmark", "Velmark", "Velmark was founded by someone else.")]
    with pytest.raises(InputError, match=r"indices \[1\] were trained on other documents"):
        PragAdapters(lm, CONFIG, tmp_path / "prag").encode(SAMPLES, other, progress=False)
    with pytest.raises(InputError, match="trained with other settings"):
        PragAdapters(lm, PragConfig(lr=1e-3, epochs=2), tmp_path / "prag").encode(SAMPLES, DOCS, progress=False)
    PragAdapters(lm, CONFIG, tmp_path / "prag").encode(SAMPLES, [*DOCS, other[1]], progress=False)  # more: fine
    assert (tmp_path / "prag" / "2" / "adapter_model.safetensors").exists()
    (tmp_path / "prag" / "docs.json").unlink()  # adapters whose documents were never recorded: not trusted either
    with pytest.raises(InputError, match="without a record of their documents"):
        PragAdapters(lm, CONFIG, tmp_path / "prag").encode(SAMPLES, DOCS, progress=False)


def test_answers_come_back_per_question_with_latencies(tiny_chat_model_dir, tmp_path):
    prag = PragAdapters(load_model(str(tiny_chat_model_dir), dtype="float32"), CONFIG, tmp_path / "prag")
    prag.encode(SAMPLES, DOCS, progress=False)
    timings = []
    answers = prag.answer(["Who built Marlow Bridge?", "Who founded Velmark?"], [[0], [1, 0]], None,
                          GenerationConfig(max_new_tokens=3), progress=False, timings=timings)
    assert len(answers) == 2 and len(timings) == 2 and all(t > 0 for t in timings)
    assert all(a.raw.startswith("The answer is") for a in answers)
