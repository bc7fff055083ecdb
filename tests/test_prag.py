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


def test_documents_trained_side_by_side_get_the_adapters_they_get_alone(tiny_chat_model_dir, tmp_path):
    """at_once > 1 puts several documents' samples in one padded batch, each row through its own document's LoRA
    with its own mean loss: every document's saved adapter must equal the one it gets trained alone."""
    from safetensors.torch import load_file

    docs = [Document(f"d{i}", f"Town {i}", f"Town {i} was founded by person {i} in {1800 + i}.") for i in range(5)]
    samples = [Sample(i, q, a) for i in range(5) for q, a in
               ((f"Who founded Town {i}?", f"Person {i}"), (f"In which year, after a long and winding history of "
                                                          f"disputes, was Town {i} founded?" * (1 + i % 3), f"{1800 + i}"))]
    samples += [Sample(4, "One more question only the last town has?", "Yes")]  # another sample count: its own group
    lm = load_model(str(tiny_chat_model_dir), dtype="float32")
    alone = PragAdapters(lm, CONFIG, tmp_path / "alone")
    alone.encode(samples, docs, progress=False)
    together = PragAdapters(lm, CONFIG, tmp_path / "together")  # a second PEFT wrap of the same model
    together.encode(samples, docs, progress=False, at_once=3)
    for d in range(5):
        a = load_file(tmp_path / "alone" / str(d) / "adapter_model.safetensors")
        b = load_file(tmp_path / "together" / str(d) / "adapter_model.safetensors")
        assert a.keys() == b.keys() and any(k.endswith("lora_B.weight") and v.abs().max() > 1e-4 for k, v in a.items())
        for k in a:
            assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), (d, k)


def test_groups_side_by_side_share_a_sample_count():
    from polyprag.baselines.prag import side_by_side

    assert side_by_side([0, 1, 2, 3, 4], {0: 5, 1: 5, 2: 3, 3: 5, 4: 5}, 3) == [[0, 1, 3], [4], [2]]
    assert side_by_side([0, 1], {0: 5, 1: 5}, 1) == [[0], [1]]
