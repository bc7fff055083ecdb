"""A living knowledge base: add / remove / retrain as numbered versions, history with shared files, rollback,
inspection, and the CLI around them. One base KB is built per module; each test works on its own copy."""

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from polyprag import atomic
from polyprag.lm.adapters import InventoryConfig
from polyprag.lm.generate import GenerationConfig
from polyprag.cli import main
from polyprag.text.corpus import Document, load_corpus, write_jsonl
from polyprag.errors import InputError
from polyprag.kb.knowledge import BuildConfig, KnowledgeBase
from polyprag.kb.lifecycle import describe, history_dir, rollback, versions
from polyprag.lm.models import load_model
from polyprag.method.config import TrainConfig

DOCS = [Document("marlow", "Marlow Bridge", "Marlow Bridge was finished in 1862 by the engineer Ada Feld."),
        Document("velmark", "Velmark", "Velmark is a town on the river Tesk. It was founded in 1412 by Orrin Pell."),
        Document("glass", "Glass harp", "The glass harp was invented in 1741 by Richard Pockrich in Dublin.")]
NEW = [Document("pell", "Orrin Pell", "Orrin Pell was a painter born in 1901 in Velmark.")]
# Few samples per document (3 bare QA pairs + 1 with the passage) keep the module fast.
CONFIG = BuildConfig(inventory=InventoryConfig(n_adapters=4, rank=2), max_qa=3, context_qa=1, rewrite=False,
                     training=TrainConfig(epochs=2, batch_size=4))
ONE_EPOCH = TrainConfig(epochs=1, batch_size=4)
GEN = GenerationConfig(max_new_tokens=5, batch_size=4)
FILES = ("inventory.safetensors", "routing.safetensors", "docs.jsonl", "augment.jsonl", "manifest.json")


@pytest.fixture(scope="module")
def base(tiny_chat_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("base") / "kb"
    KnowledgeBase.build(DOCS, load_model(str(tiny_chat_model_dir)), CONFIG, progress=False).save(folder)
    return folder


@pytest.fixture
def kb_dir(base, tmp_path):
    shutil.copytree(base, tmp_path / "kb")
    return tmp_path / "kb"


def load(folder, model_dir):
    return KnowledgeBase.load(folder, load_model(str(model_dir)))


def printed(capsys) -> str:
    """What the CLI printed, with rich's line wrapping undone."""
    return " ".join(capsys.readouterr().out.split())


def snapshot(folder):
    """Every file under the KB and its history, by relative path → bytes."""
    roots = [folder, history_dir(folder)]
    return {str(p.relative_to(folder.parent)): p.read_bytes() for r in roots if r.exists()
            for p in sorted(r.rglob("*")) if p.is_file()}


def test_add_saves_version_2_and_keeps_version_1_as_a_copy_of_its_own(kb_dir, base, tiny_chat_model_dir):
    kb = load(kb_dir, tiny_chat_model_dir)
    assert kb.manifest.version == 1
    kb.add(NEW, ONE_EPOCH, progress=False)
    kb.save(kb_dir)
    assert json.loads((kb_dir / "manifest.json").read_text())["version"] == 2 == kb.manifest.version
    assert (kb_dir / "inventory.safetensors").read_bytes() == (base / "inventory.safetensors").read_bytes()
    v1 = history_dir(kb_dir) / "v1"
    assert all((v1 / f).read_bytes() == (base / f).read_bytes() for f in FILES)  # v1 kept whole
    current, old = (kb_dir / "inventory.safetensors").stat(), (v1 / "inventory.safetensors").stat()
    assert current.st_ino != old.st_ino and current.st_nlink == 1  # damage to one cannot reach the other
    rows = load_file(kb_dir / "routing.safetensors")["logits"]
    assert torch.equal(rows[:3], load_file(base / "routing.safetensors")["logits"])  # old rows unchanged
    assert {p.name for p in kb_dir.iterdir()} == {*FILES, "index", "manifest.sha256"}  # the layout kept
    assert kb.manifest.additions[-1]["n_docs"] == 1  # what `bench` reads
    assert kb.manifest.changes[-1] | {"at": None, "seconds": None} == {
        "op": "add", "ids": ["pell"], "n_docs": 1, "version": 2, "at": None, "seconds": None}


def test_remove_drops_the_document_everywhere_and_leaves_other_answers_unchanged(kb_dir, tiny_chat_model_dir):
    kb = load(kb_dir, tiny_chat_model_dir)
    questions = ["Who finished Marlow Bridge?", "When was Velmark founded?"]
    hits = kb.retrieve(questions, 1)
    assert [h[0].doc_id for h in hits] == ["marlow", "velmark"]
    before = [a.raw for a in kb.answer(questions, "poly", k=1, generation=GEN, progress=False, hits=hits)]
    rows = kb.routing.logits.detach().clone()
    kb.remove(["glass"])
    kb.save(kb_dir)
    again = load(kb_dir, tiny_chat_model_dir)
    assert [d.id for d in again.docs] == ["marlow", "velmark"] == again.index.doc_ids
    assert [a.doc_id for a in again.augmentations] == ["marlow", "velmark"]
    assert torch.equal(again.routing.logits, rows[:2])
    assert again.retrieve(["glass harp Pockrich Dublin"], 3)[0] == []  # its words left the index too
    assert [a.raw for a in again.answer(questions, "poly", k=1, generation=GEN, progress=False, hits=hits)] == before
    assert again.manifest.version == 2 and again.manifest.n_docs == 2


def test_versions_list_rollback_restores_bytes_and_can_be_undone(kb_dir, base, tiny_chat_model_dir):
    kb = load(kb_dir, tiny_chat_model_dir)
    kb.add(NEW, ONE_EPOCH, progress=False)
    kb.save(kb_dir)
    kb.remove(["glass"])
    kb.save(kb_dir)
    v3 = {f: (kb_dir / f).read_bytes() for f in FILES}
    table = versions(kb_dir)
    assert [(v["version"], v["n_docs"], v["current"]) for v in table] == [(1, 3, False), (2, 4, False), (3, 3, True)]
    assert [v["change"] for v in table] == ["build 3 docs", "add 1 (pell)", "remove 1 (glass)"]

    rollback(kb_dir, 1)
    assert all((kb_dir / f).read_bytes() == (base / f).read_bytes() for f in FILES)  # byte-identical
    table = versions(kb_dir)
    assert [(v["version"], v["current"]) for v in table] == [(1, True), (2, False), (3, False)]
    assert sorted(p.name for p in history_dir(kb_dir).iterdir()) == ["v2", "v3"]
    assert load(kb_dir, tiny_chat_model_dir).routing.n_docs == 3

    rollback(kb_dir, 3)  # undo
    assert all((kb_dir / f).read_bytes() == b for f, b in v3.items())
    with pytest.raises(InputError, match=r"no version 9; available: 1, 2, 3"):
        rollback(kb_dir, 9)


def test_a_save_after_a_rollback_takes_a_number_never_used(kb_dir, tiny_chat_model_dir):
    kb = load(kb_dir, tiny_chat_model_dir)
    kb.add(NEW, ONE_EPOCH, progress=False)
    kb.save(kb_dir)
    rollback(kb_dir, 1)
    kb = load(kb_dir, tiny_chat_model_dir)
    kb.remove(["glass"])
    kb.save(kb_dir)
    assert [(v["version"], v["n_docs"], v["current"]) for v in versions(kb_dir)] == [
        (1, 3, False), (2, 4, False), (3, 2, True)]


def test_remove_errors_name_the_ids_and_change_nothing(kb_dir, tiny_chat_model_dir, capsys):
    before = snapshot(kb_dir)
    kb = load(kb_dir, tiny_chat_model_dir)
    with pytest.raises(InputError, match=r"\['nope'\] are not in the knowledge base"):
        kb.remove(["marlow", "nope"])
    with pytest.raises(InputError, match="empty knowledge base"):
        kb.remove(["marlow", "velmark", "glass"])
    assert [d.id for d in kb.docs] == ["marlow", "velmark", "glass"] and kb.routing.n_docs == 3
    assert main(["remove", str(kb_dir), "nope"]) == 2
    assert "'nope'" in printed(capsys)
    assert snapshot(kb_dir) == before and not history_dir(kb_dir).exists()


def test_a_stop_during_a_save_keeps_the_current_version(kb_dir, tiny_chat_model_dir, monkeypatch):
    before = snapshot(kb_dir)
    kb = load(kb_dir, tiny_chat_model_dir)
    kb.remove(["glass"])

    def crash(tmp, folder):
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "_swap_in", crash)  # stop after the history copy, before the swap
    with pytest.raises(KeyboardInterrupt):
        kb.save(kb_dir)
    monkeypatch.undo()
    assert {k: v for k, v in snapshot(kb_dir).items() if k.startswith("kb/")} == before
    assert [v["version"] for v in versions(kb_dir) if v["current"]] == [1]
    assert load(kb_dir, tiny_chat_model_dir).routing.n_docs == 3
    kb.save(kb_dir)  # the next save goes on as if nothing happened
    assert [(v["version"], v["current"]) for v in versions(kb_dir)] == [(1, False), (2, True)]


def test_a_manifest_from_before_versions_reads_as_version_1(kb_dir, tiny_chat_model_dir):
    manifest = json.loads((kb_dir / "manifest.json").read_text())
    del manifest["version"], manifest["changes"]
    (kb_dir / "manifest.json").write_text(json.dumps(manifest))
    (kb_dir / "manifest.sha256").unlink(missing_ok=True)  # as a KB saved before manifests were sealed
    assert [(v["version"], v["current"]) for v in versions(kb_dir)] == [(1, True)]
    kb = load(kb_dir, tiny_chat_model_dir)
    kb.remove(["glass"])
    kb.save(kb_dir)
    assert [v["version"] for v in versions(kb_dir)] == [1, 2]


def test_cli_add_remove_versions_rollback(kb_dir, tmp_path, capsys):
    write_jsonl(NEW, tmp_path / "new.jsonl")
    kb, cache = str(kb_dir), ["--augment-cache", str(tmp_path / "cache.jsonl")]
    assert main(["add", kb, str(tmp_path / "new.jsonl"), "--epochs", "1", *cache]) == 0
    assert "version 2, 3 → 4 documents" in printed(capsys)
    assert main(["remove", kb, "glass", "marlow"]) == 0
    assert "version 3, 4 → 2 documents" in printed(capsys)
    assert main(["versions", kb]) == 0
    out = printed(capsys)
    assert "add 1 (pell)" in out and "remove 2 (glass," in out  # the table may wrap the rest
    assert main(["rollback", kb, "2"]) == 0
    assert "version 2 is current (4 documents)" in printed(capsys)
    assert main(["rollback", kb, "7"]) == 2
    assert "no version 7; available: 1, 2, 3" in printed(capsys)
    assert main(["add", kb, str(tmp_path / "new.jsonl"), *cache]) == 2  # pell is there already
    assert "already in the knowledge base" in printed(capsys)
    assert main(["versions", str(tmp_path / "nothing")]) == 2
    assert "not a polyprag knowledge base" in printed(capsys)


def test_cli_add_retrain_encodes_every_document_into_a_new_inventory(kb_dir, base, tmp_path, capsys):
    write_jsonl(NEW, tmp_path / "new.jsonl")
    assert main(["add", str(kb_dir), str(tmp_path / "new.jsonl"), "--retrain", "--epochs", "1",
                 "--augment-cache", str(tmp_path / "cache.jsonl")]) == 0
    assert "version 2, 3 → 4 documents (retrained" in printed(capsys)
    manifest = json.loads((kb_dir / "manifest.json").read_text())
    assert manifest["n_docs"] == 4 and manifest["training"]["epochs"] == 1
    assert manifest["inventory"]["n_adapters"] == 4 and manifest["changes"][-1]["op"] == "retrain"
    assert [d.id for d in load_corpus(kb_dir / "docs.jsonl")] == ["marlow", "velmark", "glass", "pell"]
    assert load_file(kb_dir / "routing.safetensors")["logits"].shape == (4, 6, 4)
    assert (kb_dir / "inventory.safetensors").read_bytes() != (base / "inventory.safetensors").read_bytes()
    v1 = history_dir(kb_dir) / "v1" / "inventory.safetensors"
    assert v1.read_bytes() == (base / "inventory.safetensors").read_bytes()
    assert os.stat(v1).st_ino != os.stat(kb_dir / "inventory.safetensors").st_ino


def test_inspect_prints_routing_stats_and_writes_a_png(kb_dir, tmp_path, capsys):
    png, report = tmp_path / "routing.png", tmp_path / "inspect.json"
    assert main(["inspect", str(kb_dir), "--plot", str(png), "--json", str(report), "--top", "2"]) == 0
    out = printed(capsys)
    for text in ("documents: 3", "M=4, rank 2", "routing fine (6 groups", "routing entropy", "sparsity",
                 "most used adapters", "nearest documents"):
        assert text in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(report.read_text())
    assert data == describe(kb_dir, top=2)
    assert 0 <= data["entropy_mean"] <= 1 and 0 <= data["sparsity"] <= 1 and len(data["top_adapters"]) == 2
    assert [n["id"] for n in data["neighbours"]] == ["marlow", "glass"]  # spread over the KB
    assert all(len(n["nearest"]) == 2 for n in data["neighbours"])  # the other two documents
    assert main(["inspect", str(tmp_path / "nothing")]) == 2


def test_a_kb_whose_manifest_is_damaged_can_still_be_listed_and_rolled_back(kb_dir, tmp_path, capsys):
    write_jsonl(NEW, tmp_path / "new.jsonl")
    kb = str(kb_dir)
    assert main(["add", kb, str(tmp_path / "new.jsonl"), "--epochs", "1", "--augment-cache", str(tmp_path / "c.jsonl")]) == 0
    damaged = (kb_dir / "manifest.json").read_text()[:40]
    (kb_dir / "manifest.json").write_text(damaged)
    capsys.readouterr()
    assert main(["ask", "Who finished Marlow Bridge?", "--kb", kb]) == 2
    assert "Roll back to an intact version" in printed(capsys)
    assert main(["versions", kb]) == 0  # the history is listed; no version is current
    assert "*" not in printed(capsys).split("change")[-1]
    assert main(["rollback", kb, "1"]) == 0
    assert "version 1 is current (3 documents)" in printed(capsys)
    kept = list((kb_dir.parent / "kb.versions").glob("damaged-*"))
    assert len(kept) == 1 and (kept[0] / "manifest.json").read_text() == damaged  # nothing is thrown away
    assert main(["ask", "Who finished Marlow Bridge?", "--kb", kb]) == 0


def test_damage_to_one_version_never_reaches_another_and_the_history_is_bounded(kb_dir, tiny_chat_model_dir,
                                                                                  monkeypatch):
    from polyprag.kb import store

    monkeypatch.setattr(store, "CHANGES_KEPT", 3)
    kb = load(kb_dir, tiny_chat_model_dir)
    for doc in NEW * 4:  # four saves (versions 2-5), two history versions kept
        kb.remove([doc.id]) if doc.id in kb.row else kb.add([doc], ONE_EPOCH, progress=False)
        kb.save(kb_dir, keep_versions=2)
    assert sorted(p.name for p in history_dir(kb_dir).iterdir()) == ["v3", "v4"]
    assert [v["version"] for v in versions(kb_dir)] == [3, 4, 5]
    changes = json.loads((kb_dir / "manifest.json").read_text())["changes"]
    assert [(c["op"], c["version"]) for c in changes] == [("build", 1), ("add", 4), ("remove", 5)]  # build + latest
    inventory = kb_dir / "inventory.safetensors"
    data = bytearray(inventory.read_bytes())
    data[-1] ^= 0xFF
    with open(inventory, "r+b") as f:  # an in-place edit of the current version's file
        f.write(data)
    assert main(["rollback", str(kb_dir), "4"]) == 0
    assert load(kb_dir, tiny_chat_model_dir).manifest.version == 4  # intact: checksums pass


def test_a_kb_reached_through_a_symlink_is_saved_in_place_with_sane_modes_and_fsynced(kb_dir, tiny_chat_model_dir,
                                                                                       tmp_path, monkeypatch):
    link = tmp_path / "link-to-kb"
    link.symlink_to(kb_dir, target_is_directory=True)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    kb = load(link, tiny_chat_model_dir)
    for doc in NEW * 2:  # two saves through the link
        kb.remove([doc.id]) if doc.id in kb.row else kb.add([doc], ONE_EPOCH, progress=False)
        kb.save(link)
    assert link.is_symlink() and link.resolve() == kb_dir.resolve()
    assert load(kb_dir, tiny_chat_model_dir).manifest.version == 3 == load(link, tiny_chat_model_dir).manifest.version
    assert sorted(p.name for p in history_dir(kb_dir).iterdir()) == ["v1", "v2"] and history_dir(link) == history_dir(kb_dir)
    assert len(synced) >= 2 * len(list(kb_dir.rglob("*")))  # every file and folder of both saves
    umask = os.umask(0o022)
    os.umask(umask)
    assert (kb_dir.stat().st_mode & 0o777) == 0o777 & ~umask
    assert {p.stat().st_mode & 0o777 for p in kb_dir.rglob("*") if p.is_file()} == {0o666 & ~umask}


def test_an_edited_manifest_is_refused_and_its_augmentation_server_needs_the_operators_word(kb_dir, tiny_chat_model_dir,
                                                                                           monkeypatch):
    from polyprag.text import augment

    manifest = json.loads((kb_dir / "manifest.json").read_text())
    evil = {**manifest, "augmenter": "llm", "augment_url": "http://attacker.example:8000"}
    (kb_dir / "manifest.json").write_text(json.dumps(evil))
    with pytest.raises(InputError, match="manifest.sha256"):
        load(kb_dir, tiny_chat_model_dir)
    (kb_dir / "manifest.sha256").unlink()  # a KB received from elsewhere: nothing sealed it here
    sent = []
    monkeypatch.setattr(augment, "chat_completions", lambda url, model, messages, progress=True:
                        sent.append(url) or ["[]"] * len(messages))
    kb = load(kb_dir, tiny_chat_model_dir)
    with pytest.raises(InputError, match="--augment-url http://attacker.example:8000"):
        kb.add(NEW, ONE_EPOCH, progress=False)
    assert sent == []  # nothing left the machine
    kb.trust_augment_url("http://attacker.example:8000")  # the operator names it: then it is used
    kb.add(NEW, ONE_EPOCH, progress=False)
    assert sent and set(sent) == {"http://attacker.example:8000"}


def test_a_manifest_cannot_make_polyprag_fetch_a_model(kb_dir, tiny_chat_model_dir):
    from polyprag.kb.knowledge import KnowledgeBase

    manifest = json.loads((kb_dir / "manifest.json").read_text())
    manifest["base_model"]["spec"] = "attacker/any-model"
    (kb_dir / "manifest.json").write_text(json.dumps(manifest))
    (kb_dir / "manifest.sha256").unlink()
    with pytest.raises(InputError, match="--model attacker/any-model"):
        KnowledgeBase.load(kb_dir)
    assert KnowledgeBase.load(kb_dir, str(tiny_chat_model_dir)).docs  # named by the operator: loads
