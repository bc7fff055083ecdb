"""`polyprag build` and `add` under torchrun: 2 CPU processes (gloo) give the knowledge base one process gives
with the same global batch, and only process 0 writes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from polyprag import distributed
from polyprag.text.corpus import Document, write_jsonl
from polyprag.errors import InputError

DOCS = [Document(f"d{i}", f"Place {i}", f"Place {i} is a town on the river Tesk. It was founded in {1400 + i} "
                 f"by the engineer Ada Feld {i}, and it has {i + 2} mills.") for i in range(7)]
# 7 documents × (QA + contrast) samples: the last batch of 4 has an odd row count, so one process's share
# is shorter; --routing-init cluster makes both embed their share of the documents and gather them.
# float32: one process and two must agree to 1e-3, and bf16's rounding depends on how the rows are split
BUILD = ["--adapters", "3", "--rank", "2", "--epochs", "2", "--train-batch-size", "4", "--storage", "fp32",
         "--routing-init", "cluster", "--contrast", "1", "--dtype", "float32"]
POLYPRAG = [sys.executable, "-c", "import sys; from polyprag.cli import main; sys.exit(main())"]


def launch(processes: int, argv: list[str]) -> None:
    if processes == 1:
        cmd = POLYPRAG + argv
    else:  # torchrun runs a script: the same one-line entry point, written to a file
        script = Path(argv[argv.index("--model") + 1]).parent / "polyprag_main.py"
        script.write_text("import sys\nfrom polyprag.cli import main\nsys.exit(main())\n")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               str(script), *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def builds(tiny_chat_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    write_jsonl(DOCS[:5], tmp / "docs.jsonl")
    write_jsonl(DOCS[5:], tmp / "more.jsonl")
    out = {}
    for n in (1, 2):
        kb = tmp / f"kb{n}"
        launch(n, ["-q", "build", str(tmp / "docs.jsonl"), "--out", str(kb), "--model", str(tiny_chat_model_dir), *BUILD])
        out[f"build{n}"] = snapshot(kb)
        launch(n, ["-q", "add", str(kb), str(tmp / "more.jsonl"), "--grow", "1", "--model", str(tiny_chat_model_dir),
                   "--dtype", "float32"])
        out[f"add{n}"] = snapshot(kb)
        out[f"folder{n}"] = kb
    return out


def snapshot(kb: Path) -> dict:
    return {"manifest": json.loads((kb / "manifest.json").read_text()),
            "inventory": load_file(kb / "inventory.safetensors"), "routing": load_file(kb / "routing.safetensors")}


def close(a: dict, b: dict) -> None:
    assert a["manifest"]["n_docs"] == b["manifest"]["n_docs"] and a["manifest"]["n_samples"] == b["manifest"]["n_samples"]
    last = [m["manifest"]["additions"][-1] if m["manifest"].get("additions") else m["manifest"] for m in (a, b)]
    assert last[0]["loss_per_epoch"] == pytest.approx(last[1]["loss_per_epoch"], rel=1e-4)
    # Gradients summed once: a process that also computed the other's rows would double the routing gradient
    # (Adam would hide that in the weights).
    grads = [[e["routing_grad_norm"] for e in m["diagnostics"]] for m in last]
    assert grads[0] == pytest.approx(grads[1], rel=1e-3)
    for part in ("inventory", "routing"):
        assert a[part].keys() == b[part].keys()
        for k in a[part]:
            torch.testing.assert_close(a[part][k], b[part][k], rtol=1e-3, atol=1e-5, msg=f"{part} {k}")


def test_two_processes_build_the_knowledge_base_one_process_builds(builds):
    close(builds["build2"], builds["build1"])
    # Not trivially close: training moved the inventory away from its start (B = 0).
    assert max(float(t.abs().max()) for k, t in builds["build2"]["inventory"].items() if "lora_B" in k) > 1e-3


def test_two_processes_add_with_growth_as_one_process_does(builds):
    close(builds["add2"], builds["add1"])
    assert builds["add2"]["manifest"]["additions"][-1]["adapters_grown"] == 1


def test_only_process_zero_writes(builds):
    """One version per command (build, add): two processes that each saved would make two; no leftovers."""
    for n in (1, 2):
        folder = builds[f"folder{n}"]
        assert builds[f"add{n}"]["manifest"]["version"] == 2
        assert [p.name for p in folder.with_name(folder.name + ".versions").iterdir()] == ["v1"]
        assert sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(folder.name)) == [
            folder.name, folder.name + ".versions"]  # no checkpoint, no staging folder left


def test_shares_cover_everything_once(monkeypatch):
    for world in (1, 2, 3, 5):
        monkeypatch.setenv("WORLD_SIZE", str(world))
        for n in (0, 1, 4, 7):
            parts = []
            for r in range(world):
                monkeypatch.setenv("RANK", str(r))
                parts += list(range(n))[distributed.block(n)]
            assert parts == list(range(n))


@pytest.mark.parametrize("split", [{"micro_batch": 1}, {"pass_tokens": 1}, {"pass_tokens": 200}])
def test_micro_batches_give_the_whole_batch_result(tiny_chat_model_dir, split):
    """--micro-batch 1, a --pass-tokens budget below one row (one row per forward/backward pass: less memory), or
    one that packs rows of several lengths out of their order: the same training up to rounding."""
    from dataclasses import replace

    from polyprag.lm.adapters import InventoryConfig, inventory_state
    from polyprag.kb.knowledge import BuildConfig, KnowledgeBase
    from polyprag.lm.models import load_model
    from polyprag.method.config import TrainConfig

    config = BuildConfig(inventory=InventoryConfig(n_adapters=3, rank=2), contrast=1, storage="fp32",
                         training=TrainConfig(epochs=2, batch_size=4, routing_entropy=0.5))
    kbs = [KnowledgeBase.build(DOCS[:5], load_model(str(tiny_chat_model_dir), dtype="float32"),
                               replace(config, training=replace(config.training, **m)), progress=False)
           for m in ({"pass_tokens": 0}, split)]
    assert kbs[1].manifest.loss_per_epoch == pytest.approx(kbs[0].manifest.loss_per_epoch, rel=1e-4)
    whole, passes = (inventory_state(kb.layers) for kb in kbs)
    for k in whole:
        torch.testing.assert_close(passes[k], whole[k], rtol=1e-3, atol=1e-5, msg=k)
    torch.testing.assert_close(kbs[1].routing.logits, kbs[0].routing.logits, rtol=1e-3, atol=1e-5)
    assert float(whole["model.layers.0.mlp.up_proj.lora_B"].abs().max()) > 1e-3  # training moved it


def test_a_pass_holds_as_many_rows_as_its_token_budget_allows():
    from polyprag.method.config import TrainConfig
    from polyprag.method.train import Encoded, _passes

    rows = [Encoded(0, list(range(n)), 1) for n in (100, 90, 80, 70)]
    every = [0, 1, 2, 3]
    assert _passes(rows, every, TrainConfig(pass_tokens=0)) == [every]  # no budget: the whole batch
    assert _passes(rows, every, TrainConfig()) == [[0, 1, 2], [3]]  # the default budget, 384 tokens: 3 × 100
    assert _passes(rows, every, TrainConfig(pass_tokens=250)) == [[0, 1], [2, 3]]  # padded to each pass's longest
    assert _passes(rows, every, TrainConfig(pass_tokens=220), multiple=16) == [[0], [1, 2], [3]]  # 16-bit: 2 × 112
    assert _passes(rows, every, TrainConfig(pass_tokens=50)) == [[0], [1], [2], [3]]  # never fewer than one row
    assert _passes(rows, every, TrainConfig(pass_tokens=250, objective="both")) == [every]  # the NLL alone is split
    assert _passes(rows, every, TrainConfig(micro_batch=3)) == [[0, 1, 2], [3]]  # a fixed count, in order
    assert _passes(rows, [2, 3], TrainConfig(pass_tokens=100)) == [[2], [3]]  # another process's share
    assert _passes(rows, [], TrainConfig()) == [] == _passes(rows, [], TrainConfig(micro_batch=2))  # an empty share
    # a passage row among bare questions: the bare ones share a pass, longest first, whatever their order
    mixed = [Encoded(0, list(range(n)), 1) for n in (40, 220, 45, 30)]
    assert _passes(mixed, [0, 1, 2, 3], TrainConfig()) == [[1], [2, 0, 3]]
    with pytest.raises(InputError, match="pass_tokens=-1"):
        TrainConfig(pass_tokens=-1)


@pytest.mark.parametrize("micro_batch", [0, 1])
def test_checkpointed_activations_give_the_same_training(tiny_chat_model_dir, micro_batch):
    """--checkpoint-activations: each layer recomputed in the backward pass, with the mixing it ran forward with;
    the same training up to rounding (a recompute without the adapters would give other gradients)."""
    from dataclasses import replace

    from polyprag.lm.adapters import InventoryConfig, inventory_state
    from polyprag.kb.knowledge import BuildConfig, KnowledgeBase
    from polyprag.lm.models import load_model
    from polyprag.method.config import TrainConfig

    config = BuildConfig(inventory=InventoryConfig(n_adapters=3, rank=2), contrast=1, storage="fp32",
                         training=TrainConfig(epochs=2, batch_size=4, micro_batch=micro_batch))
    kbs = [KnowledgeBase.build(DOCS[:5], load_model(str(tiny_chat_model_dir), dtype="float32"),
                               replace(config, training=replace(config.training, checkpoint_activations=c)),
                               progress=False) for c in (False, True)]
    assert kbs[1].manifest.loss_per_epoch == pytest.approx(kbs[0].manifest.loss_per_epoch, rel=1e-4)
    plain, checkpointed = (inventory_state(kb.layers) for kb in kbs)
    for k in plain:
        torch.testing.assert_close(checkpointed[k], plain[k], rtol=1e-3, atol=1e-5, msg=k)
    torch.testing.assert_close(kbs[1].routing.logits, kbs[0].routing.logits, rtol=1e-3, atol=1e-5)
    assert not kbs[1].lm.model.is_activation_checkpointing  # switched off again for answering
