"""Growing the inventory: new adapters trained on new documents only, old documents' answers bit-for-bit
the same (logits and greedy tokens), saved and loaded like any version, and the CLI around it."""

import json
from dataclasses import replace

import pytest
import torch

from polyprag.lm.adapters import InventoryConfig, inventory_state, mixing
from polyprag.lm.generate import GenerationConfig
from polyprag.lm.prompts import build_prompt
from polyprag import cli
from polyprag import kb_commands
from polyprag.cli import main
from polyprag.text.corpus import Document, write_jsonl
from polyprag.errors import InputError
from polyprag.kb.knowledge import BuildConfig, KnowledgeBase, growth_for
from polyprag.lm.models import load_model
from polyprag.method.routing import MASKED, masked_weights
from polyprag.method.config import TrainConfig

OLD = [Document("marlow", "Marlow Bridge", "Marlow Bridge was finished in 1862 by the engineer Ada Feld."),
       Document("velmark", "Velmark", "Velmark is a town on the river Tesk. It was founded in 1412 by Orrin Pell."),
       Document("glass", "Glass harp", "The glass harp was invented in 1741 by Richard Pockrich in Dublin."),
       Document("mill", "Tesk mill", "The Tesk mill burned down in 1901 and was rebuilt in 1903 by Ilse Brandt.")]
NEW = [Document("pell", "Orrin Pell", "Orrin Pell was a painter born in 1901 in Velmark."),
       Document("quill", "Edda Quill", "Edda Quill was a beekeeper born in 1877 in Ossenlaw.")]
OLD_QUESTIONS = ["Who built the Marlow Bridge?", "Who invented the glass harp?", "When did the Tesk mill burn?"]
CONFIG = BuildConfig(inventory=InventoryConfig(n_adapters=4, rank=2), routing_init="cluster", max_qa=3, contrast=0,
                     context_qa=1, rewrite=False, training=TrainConfig(epochs=2, batch_size=4))
GEN = GenerationConfig(max_new_tokens=6, batch_size=4)


def old_only_hits(kb: KnowledgeBase):
    """Each old question's retrieved documents, restricted to old ones (as before the addition)."""
    return [[h for h in hs if h.doc_id in {d.id for d in OLD}] for hs in kb.retrieve(OLD_QUESTIONS, k=2)]


def prompt_logits(kb: KnowledgeBase, hits) -> torch.Tensor:
    """(Q, V) next-token logits of each old question's prompt under its routed mixture."""
    weights = kb.weights(hits, "poly")  # (Q, G, M)
    out = []
    for q, w in zip(OLD_QUESTIONS, weights):
        ids = kb.lm.tokenizer(build_prompt(kb.lm.tokenizer, q, None, shots=False), return_tensors="pt")
        with torch.no_grad(), mixing(kb.layers, w[None]):
            out.append(kb.lm.model(**ids).logits[0, -1])
    return torch.stack(out)


@pytest.fixture()
def built(tiny_chat_model_dir):
    return KnowledgeBase.build(OLD, load_model(str(tiny_chat_model_dir)), CONFIG, progress=False)


def test_growing_trains_new_adapters_and_leaves_old_answers_bit_for_bit(built, tiny_chat_model_dir, tmp_path):
    kb = built
    hits = old_only_hits(kb)
    logits_before = prompt_logits(kb, hits)
    answers_before = [a.raw for a in kb.answer(OLD_QUESTIONS, "poly", generation=GEN, progress=False, hits=hits)]
    a_before, b_before = kb.layers[0].lora_A.detach().clone(), kb.layers[0].lora_B.detach().clone()
    rows_before = kb.routing.logits.detach().clone()

    kb.add(NEW, TrainConfig(epochs=2, batch_size=4), progress=False, grow=2)

    assert kb.layers[0].lora_A.shape[0] == 6 and kb.manifest.inventory.n_adapters == 6
    assert torch.equal(kb.layers[0].lora_A[:4], a_before) and torch.equal(kb.layers[0].lora_B[:4], b_before)
    assert kb.layers[0].lora_B[4:].abs().sum() > 0  # the new adapters learned
    assert torch.equal(kb.routing.logits[:4, :, :4], rows_before)  # old rows as they were ...
    assert (kb.routing.logits[:4, :, 4:] == MASKED).all()  # ... and blind to the new adapters
    new_weights = masked_weights(kb.routing.logits.detach()[4:])  # (2, G, 6)
    assert (new_weights[..., 4:].sum(-1) > 0.5).all()  # new documents lean on the new adapters
    addition = kb.manifest.additions[-1]
    assert addition["adapters_grown"] == 2 and addition["n_adapters"] == 6
    assert all(e["max_abs_z"] < 100 for e in addition["diagnostics"])  # the MASKED logits are no routing
    g = kb.routing.logits.shape[1]
    # stored bytes: adapters in bf16 and routing in fp16 (2 bytes a value), centroids in fp32
    grown_bytes = sum(2 * (l.lora_A[0].numel() + l.lora_B[0].numel()) * 2 for l in kb.layers)
    centroids = 2 * kb.routing.centroids.shape[1] * 4  # the new documents' clusters, for later additions
    assert addition["tensor_bytes_added"] == grown_bytes + (4 * 2 + 2 * 6) * g * 2 + centroids  # + columns, rows

    assert torch.equal(prompt_logits(kb, hits), logits_before)  # bit for bit
    after = [a.raw for a in kb.answer(OLD_QUESTIONS, "poly", generation=GEN, progress=False, hits=hits)]
    assert after == answers_before

    kb.save(tmp_path / "kb")
    loaded = KnowledgeBase.load(tmp_path / "kb", load_model(str(tiny_chat_model_dir)))
    assert torch.equal(prompt_logits(loaded, hits), logits_before)
    assert loaded.routing.logits.shape[-1] == 6 and len(loaded.docs) == 6


def test_a_plain_addition_after_a_growth_routes_over_every_adapter(built):
    built.add(NEW[:1], TrainConfig(epochs=1, batch_size=4), progress=False, grow=1)
    built.add(NEW[1:], TrainConfig(epochs=1, batch_size=4), progress=False)  # Poly-z over the 5 adapters
    assert built.routing.logits.shape == (6, built.routing.logits.shape[1], 5)
    assert (built.routing.logits[5] > MASKED / 2).all()


def test_the_auto_rule_keeps_documents_per_adapter(built):
    manifest = built.manifest.with_adapters(20)
    manifest = type(manifest)(**{**vars(manifest), "n_docs": 300})
    assert growth_for(15, manifest) == 1 and growth_for(150, manifest) == 10 and growth_for(1, manifest) == 1
    assert growth_for(45, manifest) == 3


def test_cli_add_grow_prints_the_growth_and_refuses_bad_values(built, tiny_chat_model_dir, tmp_path, capsys,
                                                               monkeypatch):
    built.save(tmp_path / "kb")
    write_jsonl(NEW, tmp_path / "new.jsonl")
    base = ["-q", "add", str(tmp_path / "kb"), str(tmp_path / "new.jsonl"), "--model", str(tiny_chat_model_dir),
            "--epochs", "1", "--augment-cache", str(tmp_path / "cache.jsonl")]
    assert main(base + ["--grow", "many"]) == 2
    assert "--grow 'many'" in capsys.readouterr().out
    assert main(base + ["--grow", "1", "--retrain"]) == 2
    assert main(base + ["--grow", "1", "--lr-adapters", "0"]) == 2
    assert "--lr-adapters 0.0: must be > 0" in capsys.readouterr().out
    assert main(base + ["--grow", "auto", "--lr-adapters", "0.004"]) == 0
    assert json.loads((tmp_path / "kb" / "manifest.json").read_text())["additions"][-1]["lr_adapters"] == 0.004
    assert "adapters grown" in " ".join(capsys.readouterr().out.split())
    monkeypatch.setattr(cli.console, "width", 10_000)  # one line per row: rich would wrap the table
    assert main(["-q", "inspect", str(tmp_path / "kb")]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "additions since the build" in shown and "tensor bytes added" in shown, shown
    with pytest.raises(InputError, match="no --grow"):
        built.add([Document("x", "X", "X is a hill.")], progress=False, grow=1, no_train=True)


def test_the_service_grows_the_inventory_when_asked(built, tmp_path):
    import time

    from fastapi.testclient import TestClient

    from polyprag.service.serve import create_app

    built.save(tmp_path / "kb")
    client = TestClient(create_app(tmp_path / "kb", watch_s=0), base_url="http://127.0.0.1")
    doc = {"id": "pell", "title": "Orrin Pell", "text": NEW[0].text}
    assert client.post("/v1/documents", json={"documents": [doc], "grow": -1}).status_code == 422
    assert client.post("/v1/documents", json={"documents": [doc], "grow": "lots"}).status_code == 422
    job = client.post("/v1/documents", json={"documents": [doc], "grow": 2}).json()["job_id"]
    deadline = time.monotonic() + 120
    while (status := client.get(f"/v1/jobs/{job}").json())["status"] not in ("done", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert status["status"] == "done", status
    kb = KnowledgeBase.load(tmp_path / "kb")
    assert kb.manifest.inventory.n_adapters == 6 and kb.manifest.additions[-1]["adapters_grown"] == 2


def test_compact_shrinks_a_grown_inventory_back_and_keeps_every_document(built, tiny_chat_model_dir, tmp_path,
                                                                          capsys, monkeypatch):
    monkeypatch.setattr(cli.console, "width", 10_000)
    built.add(NEW, TrainConfig(epochs=1, batch_size=4), progress=False, grow=2)
    built.save(tmp_path / "kb")
    argv = ["-q", "compact", str(tmp_path / "kb"), "--model", str(tiny_chat_model_dir), "--epochs", "1",
            "--augment-cache", str(tmp_path / "cache.jsonl")]
    assert main(argv) == 0
    assert "6 documents, 6 → 4 adapters" in " ".join(capsys.readouterr().out.split())
    kb = KnowledgeBase.load(tmp_path / "kb", load_model(str(tiny_chat_model_dir)))
    assert kb.manifest.inventory.n_adapters == 4 and not kb.manifest.additions
    assert [d.id for d in kb.docs] == [d.id for d in OLD + NEW]
    assert main(argv[:3] + ["--adapters", "0"]) == 2


def test_a_long_re_encoding_carries_over_what_another_writer_saved_meanwhile(built, tiny_chat_model_dir, tmp_path):
    built.save(tmp_path / "kb")
    compacting = KnowledgeBase.load(tmp_path / "kb", load_model(str(tiny_chat_model_dir)))
    compacting.retrain([], TrainConfig(epochs=1, batch_size=4), progress=False)
    other = KnowledgeBase.load(tmp_path / "kb", load_model(str(tiny_chat_model_dir)))  # meanwhile, elsewhere
    other.remove(["glass"])
    other.add(NEW[:1], TrainConfig(epochs=1, batch_size=4), progress=False)
    other.save(tmp_path / "kb")  # version 2
    kb_commands._save_rebasing(compacting, tmp_path / "kb", tmp_path / "cache.jsonl")
    final = KnowledgeBase.load(tmp_path / "kb", load_model(str(tiny_chat_model_dir)))
    assert final.manifest.version == 3 and {d.id for d in final.docs} == {"marlow", "velmark", "mill", "pell"}
    ops = [c["op"] for c in final.manifest.changes if c.get("version") == 3]
    assert ops == ["retrain", "remove", "add"]  # the re-encoding, then the other writer's changes carried over


def test_a_shared_adapter_is_trained_saved_and_left_alone_by_growth(tiny_chat_model_dir, tmp_path):
    config = replace(CONFIG, inventory=replace(CONFIG.inventory, shared=True))
    kb = KnowledgeBase.build(OLD, load_model(str(tiny_chat_model_dir)), config, progress=False)
    layer = kb.layers[0]
    assert layer.shared_B.abs().sum() > 0 and f"{layer.path}.shared_A" in inventory_state(kb.layers)  # it learned
    shared_before = {k: p.detach().clone() for k, p in layer.named_adapters().items() if k.startswith("shared")}
    hits = old_only_hits(kb)
    logits_before = prompt_logits(kb, hits)
    with torch.no_grad(), mixing(kb.layers, kb.weights(hits, "poly")[:1]):  # without it the output differs
        ids = kb.lm.tokenizer("Who built the Marlow Bridge?", return_tensors="pt")
        with_shared = kb.lm.model(**ids).logits
        layer.shared_B.zero_()
        assert not torch.equal(kb.lm.model(**ids).logits, with_shared)
        layer.shared_B.copy_(shared_before["shared_B"])

    kb.add(NEW, TrainConfig(epochs=1, batch_size=4), progress=False, grow=1)
    assert all(torch.equal(getattr(layer, k), v) for k, v in shared_before.items())  # an old adapter too
    assert torch.equal(prompt_logits(kb, hits), logits_before)

    kb.save(tmp_path / "kb")
    loaded = KnowledgeBase.load(tmp_path / "kb", load_model(str(tiny_chat_model_dir)))
    assert loaded.layers[0].config.shared and torch.equal(loaded.layers[0].shared_B, layer.shared_B)
    assert torch.equal(prompt_logits(loaded, hits), logits_before)


def test_an_addition_can_train_on_fewer_passage_samples_than_the_build(built, tmp_path):
    kb = built
    kb.add(NEW[:1], TrainConfig(epochs=1, batch_size=4), progress=False, grow=1, context_qa=0)
    lean = kb.manifest.additions[-1]
    kb.add(NEW[1:], TrainConfig(epochs=1, batch_size=4), progress=False, grow=1)
    full = kb.manifest.additions[-1]
    assert lean["context_qa"] == 0 and "context_qa" not in full  # recorded when it differs from the build's
    assert lean["n_samples"] == full["n_samples"] - CONFIG.context_qa  # the same QA pairs (max_qa 3), no passage


def test_a_staged_build_grows_the_second_half_of_its_inventory_for_the_second_half_of_its_documents(
        tiny_chat_model_dir, tmp_path):
    docs = OLD + NEW  # stage 1: marlow, glass, pell on adapters 0-1; stage 2: velmark, mill, quill grow 2-3
    lm = load_model(str(tiny_chat_model_dir))
    kb = KnowledgeBase.build(docs, lm, replace(CONFIG, stages=2), progress=False)
    m = kb.manifest
    assert m.build.stages == 2 and m.inventory.n_adapters == 4 == m.built_adapters() and not m.additions
    assert m.n_docs == 6 and [d.id for d in kb.docs] == [d.id for d in docs]  # rows in the given order
    assert {h["stage"] for h in m.diagnostics} == {1, 2} and m.build_seconds > 0
    w = kb.routing.inference_weights()  # (6, G, 4)
    first, second = w[0::2], w[1::2]
    assert (first[..., 2:] == 0).all() and (first[..., :2].sum(-1) > 0.99).all()  # never the grown adapters
    assert (second[..., 2:].sum(-1) > 0).all()  # the later documents' rows use the adapters grown for them
    kb.save(tmp_path / "kb")
    again = KnowledgeBase.load(tmp_path / "kb", str(tiny_chat_model_dir))
    assert torch.equal(again.routing.inference_weights(), w) and again.manifest.build.stages == 2
    again.retrain(progress=False)  # re-encodes in two stages again, at the build's size
    assert again.manifest.inventory.n_adapters == 4 and (again.routing.inference_weights()[0::2, :, 2:] == 0).all()
    one = KnowledgeBase.build(docs[:1], load_model(str(tiny_chat_model_dir)), replace(CONFIG, stages=2),
                              progress=False)  # a single document has no second stage
    assert one.manifest.inventory.n_adapters == 4 and one.manifest.n_docs == 1
    with pytest.raises(InputError, match="--adapters 2 or more"):
        replace(CONFIG, stages=2, inventory=InventoryConfig(n_adapters=1, rank=2))
