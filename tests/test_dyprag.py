"""DyPRAG baseline: a translator from a document's embedding to a PRAG-shaped LoRA, trained on PRAG's adapters."""

import pytest
import torch
from safetensors.torch import load_file

from polyprag.text.augment import Sample
from polyprag.text.corpus import Document
from polyprag.baselines.dyprag import Dyprag, DypragConfig, Translator
from polyprag.errors import InputError
from polyprag.lm.generate import GenerationConfig
from polyprag.lm.models import load_model
from polyprag.baselines.prag import PragAdapters, PragConfig

DOCS = [Document("marlow", "Marlow Bridge", "Marlow Bridge is a stone arch bridge over the river Tesk, finished in 1862."),
        Document("velmark", "Velmark", "Velmark is a town on the river Tesk known for its canals and mills."),
        Document("feld", "Ada Feld", "Ada Feld was the engineer who built the Marlow Bridge."),
        Document("tesk", "Tesk", "The Tesk is a river that runs through Velmark and under Marlow Bridge.")]
SAMPLES = [Sample(0, "Who built Marlow Bridge?", "Ada Feld"), Sample(0, "When was Marlow Bridge finished?", "1862"),
           Sample(1, "What is Velmark known for?", "canals and mills"), Sample(2, "Who was Ada Feld?", "an engineer"),
           Sample(3, "Which river runs through Velmark?", "the Tesk")]


@pytest.fixture(scope="module")
def prag(tiny_chat_model_dir, tmp_path_factory):
    adapters = PragAdapters(load_model(str(tiny_chat_model_dir)), PragConfig(lr=1e-2, epochs=2),
                            tmp_path_factory.mktemp("dyprag") / "prag")
    adapters.encode(SAMPLES, DOCS, progress=False)
    return adapters


def _logits(prag, lora, ids):
    with torch.no_grad(), prag.summed([lora] if lora is not None else []):
        return prag.model(input_ids=ids).logits


def test_translated_lora_has_the_keys_and_shapes_of_a_prag_adapter(prag):
    saved = load_file(prag.doc_dir(0) / "adapter_model.safetensors")
    lora = Dyprag(prag, DypragConfig()).lora(DOCS[0])
    assert {k: tuple(v.shape) for k, v in lora.items()} == {k: tuple(v.shape) for k, v in saved.items()}


def test_a_near_zero_translator_leaves_the_base_models_logits(prag):
    ids = prag.lm.tokenizer("Who built Marlow Bridge?", return_tensors="pt").input_ids
    dy = Dyprag(prag, DypragConfig())
    base, translated = _logits(prag, None, ids), _logits(prag, dy.lora(DOCS[0]), ids)
    assert torch.allclose(translated, base, atol=1e-6)
    trained = _logits(prag, prag.doc_dir(0), ids)  # PRAG's own adapter does move them: the check can fail
    assert not torch.allclose(trained, base, atol=1e-3)


def test_a_translated_lora_is_applied_as_prag_applies_its_adapter(prag):
    """The same weights through the translator's path (a state dict) and PRAG's (a saved folder): same logits."""
    ids = prag.lm.tokenizer("Who built Marlow Bridge?", return_tensors="pt").input_ids
    saved = load_file(prag.doc_dir(0) / "adapter_model.safetensors")
    assert torch.allclose(_logits(prag, saved, ids), _logits(prag, prag.doc_dir(0), ids), atol=1e-5)


def test_twenty_steps_on_four_documents_lower_the_loss(prag):
    dy = Dyprag(prag, DypragConfig(lr=1e-2, epochs=5))
    history = dy.train(DOCS, SAMPLES, progress=False)
    assert len(history) == 5  # 5 epochs × 4 documents = 20 steps
    assert history[-1]["loss"] < 0.9 * history[0]["loss"]  # 15.5 → 12.7 on the tiny model
    assert history[-1]["ce"] < history[0]["ce"] and history[-1]["mse"] < history[0]["mse"]


def test_save_then_load_gives_identical_loras(prag, tmp_path):
    dy = Dyprag(prag, DypragConfig(lr=1e-2, epochs=1))
    dy.train(DOCS, SAMPLES, progress=False)
    dy.translator.save(tmp_path / "translator")
    again = Dyprag(prag, dy.config, Translator.load(tmp_path / "translator"))
    a, b = dy.lora(DOCS[1]), again.lora(DOCS[1])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(v.abs().max() > 1e-4 for v in a.values())  # trained: not the near-zero start


@pytest.mark.parametrize("epochs, dies_after, every_s, resumed", [(3, 2 * len(DOCS), 600.0, [True, True, False]),
                                                                  (2, len(DOCS) + 2, 0.0, [True, False])])
def test_an_interrupted_training_resumes_where_it_was_to_the_same_translator(prag, tmp_path, monkeypatch, epochs,
                                                                               dies_after, every_s, resumed):
    """Killed after two epochs of 3, or two documents into the second of 2 (a checkpoint after every document):
    the resumed translator is the uninterrupted one, bit for bit, and the time spent before the kill is kept."""
    config = DypragConfig(lr=1e-2, epochs=epochs)
    whole = Dyprag(prag, config)
    whole.train(DOCS, SAMPLES, progress=False)
    step, calls = Dyprag._step, []

    def dies(self, *args):
        calls.append(1)
        if len(calls) > dies_after:
            raise KeyboardInterrupt
        return step(self, *args)

    monkeypatch.setattr(Dyprag, "_step", dies)
    with pytest.raises(KeyboardInterrupt):
        Dyprag(prag, config).train(DOCS, SAMPLES, progress=False, checkpoint=tmp_path / "ckpt", every_s=every_s)
    monkeypatch.setattr(Dyprag, "_step", step)
    with pytest.raises(InputError, match="other settings"):  # a checkpoint of other settings is not resumed
        Dyprag(prag, DypragConfig(lr=1e-3, epochs=config.epochs)).train(DOCS, SAMPLES, progress=False,
                                                                        checkpoint=tmp_path / "ckpt")
    again = Dyprag(prag, config)
    history = again.train(DOCS, SAMPLES, progress=False, checkpoint=tmp_path / "ckpt", every_s=every_s)
    assert [h.get("resumed", False) for h in history] == resumed
    assert all(h["seconds"] >= h["seconds_before"] >= 0 for h in history)
    assert history[1]["seconds_before"] > 0  # the second epoch: the earlier process's time on it is kept
    assert all(torch.equal(x, y) for x, y in zip(whole.translator.parameters(), again.translator.parameters()))


def test_the_same_seed_gives_the_same_translator(prag):
    a, b = Dyprag(prag, DypragConfig(seed=3)), Dyprag(prag, DypragConfig(seed=3))
    assert all(torch.equal(x, y) for x, y in zip(a.translator.parameters(), b.translator.parameters()))


def test_answers_per_question_with_the_translation_in_the_latency(prag):
    dy = Dyprag(prag, DypragConfig(lr=1e-2, epochs=1))
    timings = []
    answers = dy.answer(["Who built Marlow Bridge?", "What is Velmark known for?"], [[DOCS[0]], [DOCS[1], DOCS[3]]],
                        None, GenerationConfig(max_new_tokens=3), progress=False, timings=timings)
    assert len(answers) == 2 and len(timings) == 2 and all(t > 0 for t in timings)
    assert all(a.raw.startswith("The answer is") for a in answers)


def test_training_without_prag_adapters_is_refused(prag):
    with pytest.raises(InputError, match="PRAG adapters"):
        Dyprag(prag, DypragConfig()).train(DOCS + [Document("new", "New", "Not encoded.")],
                                           SAMPLES + [Sample(4, "What is new?", "nothing")], progress=False)


def test_bad_settings_are_refused():
    with pytest.raises(InputError, match="lr"):
        DypragConfig(lr=0)
