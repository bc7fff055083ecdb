"""Knowledge base: build → save → load round trip, base-model check, answering modes, the CLI."""

import json
from dataclasses import replace

import pytest
import torch

from polyprag.lm.adapters import InventoryConfig, inventory_state
from polyprag.lm.generate import GenerationConfig
from polyprag.lm.prompts import build_prompt
from polyprag.cli import main
from polyprag.text.corpus import Document, write_jsonl
from polyprag.errors import InputError
from polyprag.kb.knowledge import BuildConfig, KnowledgeBase
from polyprag.kb.manifest import LEGACY, Manifest
from polyprag.lm.models import load_model
from polyprag.method.config import TrainConfig

DOCS = [Document("marlow", "Marlow Bridge", "Marlow Bridge was finished in 1862 by the engineer Ada Feld."),
        Document("velmark", "Velmark", "Velmark is a town on the river Tesk. It was founded in 1412 by Orrin Pell."),
        Document("glass", "Glass harp", "The glass harp was invented in 1741 by Richard Pockrich in Dublin.")]
CONFIG = BuildConfig(inventory=InventoryConfig(n_adapters=4, rank=2), training=TrainConfig(epochs=2, batch_size=4))
GEN = GenerationConfig(max_new_tokens=5, batch_size=4)


@pytest.fixture(scope="module")
def built(tiny_chat_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("kb") / "kb"
    kb = KnowledgeBase.build(DOCS, load_model(str(tiny_chat_model_dir)), CONFIG, progress=False)
    kb.save(folder)
    return kb, folder


def test_folder_holds_the_documented_files(built):
    kb, folder = built
    assert {p.name for p in folder.iterdir()} == {"manifest.json", "inventory.safetensors", "routing.safetensors",
                                                  "docs.jsonl", "augment.jsonl", "index", "manifest.sha256"}
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["n_docs"] == 3 and manifest["inventory"]["n_adapters"] == 4
    assert len(manifest["loss_per_epoch"]) == 2
    assert kb.routing.logits.shape == (3, 3 * 2, 4)  # (docs, gate/up/down × 2 layers, M)


def test_save_then_load_gives_identical_logits_and_greedy_tokens(built, tiny_chat_model_dir):
    kb, folder = built
    loaded = KnowledgeBase.load(folder, load_model(str(tiny_chat_model_dir)))
    assert [d.id for d in loaded.docs] == [d.id for d in kb.docs]
    questions = ["Who finished Marlow Bridge?", "When was Velmark founded?"]
    for mode in ("poly", "poly-combine", "poly-uniform"):
        a = [x.raw for x in kb.answer(questions, mode, k=2, generation=GEN, progress=False)]
        b = [x.raw for x in loaded.answer(questions, mode, k=2, generation=GEN, progress=False)]
        assert a == b
    hits = kb.retrieve(questions, 2)
    ids = kb.lm.tokenizer(build_prompt(kb.lm.tokenizer, questions[0], shots=False), return_tensors="pt").input_ids
    from polyprag.lm.adapters import mixing
    with mixing(kb.layers, kb.weights(hits, "poly")[:1]):
        expected = kb.lm.model(ids).logits
    with mixing(loaded.layers, loaded.weights(hits, "poly")[:1]):
        assert torch.allclose(loaded.lm.model(ids).logits, expected, atol=1e-6)


def test_a_kb_for_another_base_model_is_refused(built, tiny_base_model_dir):
    _, folder = built
    with pytest.raises(InputError, match="was built for base model"):
        KnowledgeBase.load(folder, load_model(str(tiny_base_model_dir)))


def test_a_newer_format_is_refused(built, tmp_path):
    _, folder = built
    import shutil
    copy = tmp_path / "kb"
    shutil.copytree(folder, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(InputError, match="format version 99 is newer"):
        KnowledgeBase.load(copy)


def test_routing_weights_follow_the_retrieved_documents(built):
    kb, _ = built
    hits = kb.retrieve(["Ada Feld Marlow Bridge", "zzz"], k=1)
    w = kb.weights(hits, "poly")
    assert torch.allclose(w[0], kb.routing.mean_weights(torch.tensor([0])))
    assert torch.allclose(w[1], kb.routing.uniform())  # no hit: uniform, not a random document
    assert torch.allclose(kb.weights(hits, "poly-uniform")[0], torch.full((6, 4), 0.25))


def test_cli_build_ask_and_eval_with_a_kb(tiny_chat_model_dir, tmp_path, capsys):
    write_jsonl(DOCS, tmp_path / "docs.jsonl")
    (tmp_path / "q.jsonl").write_text(json.dumps({"id": "q", "question": "Who finished Marlow Bridge?",
                                                  "answers": ["Ada Feld"], "gold_doc_ids": ["marlow"]}) + "\n")
    model = ["--model", str(tiny_chat_model_dir)]
    kb = str(tmp_path / "kb")
    assert main(["build", str(tmp_path / "docs.jsonl"), "--out", kb, "--adapters", "2", "--rank", "2",
                 "--epochs", "1", "--augment-cache", str(tmp_path / "cache.jsonl"), *model]) == 0
    assert (tmp_path / "cache.jsonl").exists() and not (tmp_path / "kb.ckpt").exists()
    assert main(["ask", "--kb", kb, "--max-new-tokens", "3", "Who finished Marlow Bridge?", *model]) == 0
    assert "1. marlow" in capsys.readouterr().out
    out = tmp_path / "res.json"
    assert main(["eval", "--kb", kb, "--questions", str(tmp_path / "q.jsonl"), "--max-new-tokens", "3",
                 "--modes", "closed-book,rag,poly,poly-combine,poly-uniform", "--json", str(out), *model]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["method"] for r in rows] == ["closed-book", "rag", "poly", "poly-combine", "poly-uniform"]
    assert all(r["recall_at_k"] == 1.0 for r in rows)


def test_poly_modes_without_a_kb_are_a_clear_error(tiny_chat_model_dir, tmp_path, capsys):
    write_jsonl(DOCS, tmp_path / "docs.jsonl")
    (tmp_path / "q.jsonl").write_text(json.dumps({"question": "Who?", "answers": ["x"]}) + "\n")
    assert main(["eval", "--corpus", str(tmp_path / "docs.jsonl"), "--questions", str(tmp_path / "q.jsonl"),
                 "--modes", "poly", "--model", str(tiny_chat_model_dir)]) == 2
    assert "mode poly needs a knowledge base: pass --kb KB" in capsys.readouterr().out


def test_a_build_on_top_blocks_saves_loads_and_refuses_more_blocks_than_the_model_has(tiny_chat_model_dir, tmp_path, capsys):
    write_jsonl(DOCS, tmp_path / "docs.jsonl")
    common = ["build", str(tmp_path / "docs.jsonl"), "--model", str(tiny_chat_model_dir), "--epochs", "1"]
    assert main([*common, "--out", str(tmp_path / "bad"), "--top-layers", "3"]) == 2
    assert "top_layers=3, but the model has 2 blocks" in capsys.readouterr().out
    assert not (tmp_path / "bad").exists()
    assert main([*common, "--out", str(tmp_path / "kb"), "--top-layers", "1"]) == 0
    kb = KnowledgeBase.load(tmp_path / "kb", str(tiny_chat_model_dir))
    assert kb.manifest.inventory.top_layers == 1
    assert {k.split(".mlp")[0] for k in inventory_state(kb.layers)} == {"model.layers.1"}


def test_a_build_with_routing_heads_saves_loads_and_answers_the_same(tiny_chat_model_dir, tmp_path):
    kb = KnowledgeBase.build(DOCS, load_model(str(tiny_chat_model_dir)),
                             replace(CONFIG, inventory=replace(CONFIG.inventory, heads=2)), progress=False)
    assert kb.routing.logits.shape == (3, 2 * len(kb.layers), 4)  # fine routing: each layer's 2 heads
    kb.save(tmp_path / "kb")
    loaded = KnowledgeBase.load(tmp_path / "kb", load_model(str(tiny_chat_model_dir)))
    assert loaded.manifest.inventory.heads == 2
    questions = ["Who finished Marlow Bridge?", "Where is Velmark?"]
    before = [a.raw for a in kb.answer(questions, progress=False)]
    assert [a.raw for a in loaded.answer(questions, progress=False)] == before


def test_a_crash_between_the_two_renames_restores_the_old_version(built, tiny_chat_model_dir, tmp_path):
    import shutil
    _, folder = built
    aside = tmp_path / ".kb.old"
    shutil.copytree(folder, aside)  # what `_swap_in` leaves if stopped after moving the old version aside
    loaded = KnowledgeBase.load(tmp_path / "kb", load_model(str(tiny_chat_model_dir)))
    assert len(loaded.docs) == 3 and (tmp_path / "kb" / "manifest.json").exists() and not aside.exists()


def test_poly_z_add_trains_only_new_rows_and_leaves_old_answers_unchanged(built, tiny_chat_model_dir, tmp_path):
    kb = KnowledgeBase.load(built[1], load_model(str(tiny_chat_model_dir)))
    inventory = {k: v.clone() for k, v in inventory_state(kb.layers).items()}
    old_rows = kb.routing.logits.detach().clone()
    old_q = ["Who finished Marlow Bridge?"]
    old_hits = kb.retrieve(old_q, 1)
    before = [a.raw for a in kb.answer(old_q, "poly", k=1, generation=GEN, progress=False, hits=old_hits)]
    new = [Document("pell", "Orrin Pell", "Orrin Pell was a painter born in 1901 in Velmark.")]
    seconds = kb.add(new, progress=False)
    assert seconds > 0 and kb.routing.n_docs == 4 and kb.docs[-1].id == "pell"
    assert torch.equal(kb.routing.logits[:3], old_rows)  # old documents' routing frozen
    assert not torch.equal(kb.routing.logits[3], torch.zeros_like(kb.routing.logits[3]))
    assert all(torch.equal(inventory[k], v) for k, v in inventory_state(kb.layers).items())  # inventory frozen
    assert [a.raw for a in kb.answer(old_q, "poly", k=1, generation=GEN, progress=False, hits=old_hits)] == before
    assert kb.retrieve(["Which painter was born in 1901?"], 1)[0][0].doc_id == "pell"
    kb.save(tmp_path / "kb2")
    again = KnowledgeBase.load(tmp_path / "kb2", load_model(str(tiny_chat_model_dir)))
    assert again.manifest.n_docs == 4 and again.manifest.additions[0]["n_docs"] == 1
    with pytest.raises(InputError, match="already in the knowledge base"):
        again.add(new, progress=False)


def test_the_manifest_reads_into_typed_values_and_writes_back_the_same_json(built):
    _, folder = built
    raw = json.loads((folder / "manifest.json").read_text())
    manifest = Manifest.from_json(raw, folder / "manifest.json")
    assert manifest.build == CONFIG and manifest.n_docs == 3 and manifest.inventory.n_adapters == 4
    assert manifest.to_json() == raw


def test_a_manifest_older_than_a_setting_reads_as_builds_were_then(built):
    _, folder = built
    raw = json.loads((folder / "manifest.json").read_text())
    for key in LEGACY:
        raw.pop(key, None)
    build = Manifest.from_json(raw, "old/manifest.json").build
    assert {k: getattr(build, k) for k in LEGACY} == LEGACY  # e.g. storage fp32, not today's bf16


@pytest.mark.parametrize("edit,message", [
    (lambda m: m.pop("training"), r"lacks \['training'\]"),
    (lambda m: m["training"].update(warp=9), "warp"),
    (lambda m: m.update(routing="diagonal"), "routing='diagonal'"),
])
def test_a_damaged_manifest_is_refused_naming_the_file(built, edit, message):
    _, folder = built
    raw = json.loads((folder / "manifest.json").read_text())
    edit(raw)
    with pytest.raises(InputError, match=message) as e:
        Manifest.from_json(raw, "kb/manifest.json")
    assert "kb/manifest.json" in str(e.value)


def _mapped_ranges(path) -> list[tuple[int, int]]:
    """The address ranges this process maps from `path` (/proc/self/maps)."""
    out = []
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith(str(path)):
            start, end = line.split()[0].split("-")
            out.append((int(start, 16), int(end, 16)))
    return out


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/maps"), reason="needs Linux's /proc/self/maps")
def test_a_loaded_kb_reads_routing_rows_from_a_memory_map_of_its_file(built, tiny_chat_model_dir):
    kb, folder = built
    loaded = KnowledgeBase.load(folder, load_model(str(tiny_chat_model_dir)))
    logits = loaded.routing.logits
    assert logits.dtype == torch.float16  # as stored (bf16 inventory, fp16 routing): no fp32 copy of the table
    ptr = logits.untyped_storage().data_ptr()
    assert any(a <= ptr < b for a, b in _mapped_ranges((folder / "routing.safetensors").resolve()))
    torch.testing.assert_close(loaded.routing.inference_weights(), kb.routing.inference_weights())


def test_changing_a_loaded_kb_never_writes_into_the_mapped_file(built, tiny_chat_model_dir, tmp_path):
    import shutil

    from polyprag.kb import store

    kb, folder = built
    copy = shutil.copytree(folder, tmp_path / "kb")
    before = (copy / "routing.safetensors").read_bytes()
    loaded = KnowledgeBase.load(copy, load_model(str(tiny_chat_model_dir)))
    loaded.routing.logits.data[0, 0, 0] = 9.0  # copy-on-write: private to this process
    loaded.add([Document("tesk", "Tesk", "The Tesk is a river that runs through Velmark.")], progress=False)
    assert loaded.routing.logits.dtype == torch.float32 and loaded.routing.logits.shape[0] == 4  # its own copy
    assert (copy / "routing.safetensors").read_bytes() == before
    store.checked_manifest(copy)  # the version on disk still matches its checksums


def test_non_finite_values_are_counted_per_tensor_in_pieces(tmp_path):
    from safetensors.torch import save_file

    from polyprag.kb.store import nonfinite_in_file, read_mapped

    logits = torch.zeros(5, 2, 3, dtype=torch.float16)
    logits[1, 0, 0], logits[4, 1, 2] = float("nan"), float("inf")
    save_file({"logits": logits, "centroids": torch.ones(2, 4)}, tmp_path / "r.safetensors")
    assert nonfinite_in_file(tmp_path / "r.safetensors", chunk=4) == {"logits": 2, "centroids": 0}
    mapped = read_mapped(tmp_path / "r.safetensors")
    assert torch.equal(mapped["centroids"], torch.ones(2, 4)) and mapped["logits"].isnan().sum() == 1


def test_a_routing_file_shorter_than_its_header_says_is_refused(tmp_path):
    from safetensors.torch import save_file

    from polyprag.kb.store import read_mapped

    save_file({"logits": torch.zeros(64, 4, 4)}, tmp_path / "r.safetensors")
    data = (tmp_path / "r.safetensors").read_bytes()
    (tmp_path / "r.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="does not fit the file"):
        read_mapped(tmp_path / "r.safetensors")


def test_routing_hits_mix_other_documents_beside_the_retrieved_passages(built, monkeypatch):
    """poly-shuffled-combine's answer: the prompt reads the retrieved passages, the adapters mix the routing of
    `routing_hits`; poly-uniform-combine: the passages beside every adapter alike, scaled like poly-combine."""
    import polyprag.kb.knowledge as knowledge
    from polyprag.text.retrieve import Hit

    kb, _ = built
    seen = {}

    def fake(lm, questions, ps, generation, progress=True, timings=None, routing=None, **kw):
        seen.update(passages=ps, weights=routing.weights)
        return []
    monkeypatch.setattr(knowledge, "answer_questions", fake)
    own, other = [[Hit("marlow", 1.0)]], [[Hit("velmark", 1.0)]]
    kb.answer(["Who finished Marlow Bridge?"], "poly-combine", hits=own, routing_hits=other)
    assert "Ada Feld" in seen["passages"][0][0] and "Velmark" not in seen["passages"][0][0]
    assert torch.equal(seen["weights"], kb.mixing_weights(other, "poly-combine"))
    assert not torch.equal(seen["weights"], kb.mixing_weights(own, "poly-combine"))
    kb.answer(["Who finished Marlow Bridge?"], "poly-uniform-combine", hits=own)
    assert "Ada Feld" in seen["passages"][0][0]
    strength = kb.manifest.build.combine_strength
    assert torch.allclose(seen["weights"], kb.routing.uniform()[None] * strength)
