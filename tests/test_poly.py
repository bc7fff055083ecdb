"""Poly-PRAG layers, routing and training on the tiny model: the specification of the method."""

import json

import pytest
import torch

from polyprag.lm.adapters import InventoryConfig, inject, inventory_state, mixed, mixing, target_modules
from polyprag.text.augment import Sample
from polyprag.lm.models import load_model
from polyprag.method.routing import RoutingTable
from polyprag.method.config import TrainConfig
from polyprag.method.loss import nll_loss
from polyprag.method.train import WIDTH_MULTIPLE, collate, encode, train


@pytest.fixture
def lm(tiny_chat_model_dir):
    return load_model(str(tiny_chat_model_dir), dtype="float32")


def _ids(lm, n=3, t=7):
    torch.manual_seed(1)
    return torch.randint(5, len(lm.tokenizer), (n, t))


def _randomize_B(layers):
    torch.manual_seed(2)
    with torch.no_grad():
        for l in layers:
            l.lora_B.normal_(0, 0.5)


def test_zero_B_gives_the_base_models_logits(lm):
    ids = _ids(lm)
    base = lm.model(ids).logits
    layers = inject(lm.model, InventoryConfig(n_adapters=4, rank=2))
    w = RoutingTable(3, len(layers), 4)(torch.arange(3))
    with mixing(layers, w):
        assert torch.allclose(lm.model(ids).logits, base, atol=1e-6)


@pytest.mark.parametrize("mode, groups", [("poly", "fine"), ("poly", "coarse"), ("delta", "fine")])
def test_batched_mixing_equals_one_document_at_a_time(lm, mode, groups):
    layers = inject(lm.model, InventoryConfig(n_adapters=4, rank=2, mixing=mode))
    _randomize_B(layers)
    routing = RoutingTable(3, len(layers) if groups == "fine" else 1, 4, init_range=2.0).eval()
    ids, w = _ids(lm), routing(torch.arange(3))
    with mixing(layers, w):
        batched = lm.model(ids).logits
    for i in range(3):
        with mixing(layers, w[i:i + 1]):
            assert torch.allclose(batched[i], lm.model(ids[i:i + 1]).logits[0], atol=1e-5)


def test_poly_mixing_is_the_lora_of_the_mixed_matrices(lm):
    layers = inject(lm.model, InventoryConfig(n_adapters=3, rank=2))
    _randomize_B(layers)
    layer, x = layers[0], torch.randn(1, 5, layers[0].base_layer.in_features)
    w = torch.tensor([[0.2, 0.5, 0.3]])
    a = sum(w[0, m] * layer.lora_A[m] for m in range(3))  # (r, d_in)
    b = sum(w[0, m] * layer.lora_B[m] for m in range(3))  # (d_out, r)
    expected = layer.base_layer(x) + layer.scaling * x @ a.T @ b.T
    with mixing([layer], w[:, None]):  # (B, G=1, M)
        assert torch.allclose(layer(x), expected, atol=1e-5)
    assert torch.equal(layer(x), layer.base_layer(x))


@pytest.mark.parametrize("sum_of_k", [False, True])
def test_answering_mixes_once_per_block_and_never_reuses_another_blocks_mixture(lm, sum_of_k):
    layers = inject(lm.model, InventoryConfig(n_adapters=3, rank=2))
    _randomize_B(layers)
    ids = _ids(lm)
    w1, w2 = torch.rand(2, 3, len(layers), *((2,) if sum_of_k else ()), 3).softmax(-1)
    expected = []
    for w in (w1, w2):
        with mixing(layers, w):  # with gradients: nothing is kept
            expected.append(lm.model(ids).logits.detach())
    with torch.no_grad():
        for w, want in zip((w1, w2), expected):
            with mixing(layers, w):
                first = lm.model(ids).logits
                calls = []
                hook = torch.einsum  # the second pass finds the mixed pairs kept: no mixing einsum runs
                with pytest.MonkeyPatch.context() as mp:
                    mp.setattr(torch, "einsum", lambda eq, *ops: calls.append(eq) or hook(eq, *ops))
                    again = lm.model(ids).logits
                assert not [c for c in calls if "m," in c]
                assert torch.allclose(first, want, atol=1e-5) and torch.equal(first, again)


def test_weights_are_nonnegative_sum_to_one_and_noisy_only_in_training():
    routing = RoutingTable(5, 3, 8, init_range=1.0)
    docs = torch.tensor([0, 3, 3])
    routing.eval()
    w = routing(docs)
    assert (w >= 0).all() and torch.allclose(w.sum(-1), torch.ones(3, 3), atol=1e-4)
    assert torch.equal(w, routing(docs))  # deterministic at inference
    routing.train()
    noisy = routing(docs)
    assert torch.allclose(noisy.sum(-1), torch.ones(3, 3), atol=1e-4)
    assert not torch.allclose(noisy[1], noisy[2])  # same document, different noise
    assert torch.allclose(routing.mean_weights(torch.tensor([1, 2])).sum(-1), torch.ones(3), atol=1e-4)


def test_mixing_context_always_clears_the_weights(lm):
    layers = inject(lm.model, InventoryConfig(n_adapters=2, rank=1))
    with pytest.raises(RuntimeError):
        with mixing(layers, torch.full((1, 1, 2), 0.5)):
            raise RuntimeError("boom")
    assert all(mixed(l) is None for l in layers)


def test_mixing_is_context_local_so_threads_do_not_share_weights(lm):
    import threading

    layers = inject(lm.model, InventoryConfig(n_adapters=2, rank=2))
    _randomize_B(layers)
    ids, results, inside, done = _ids(lm, n=1), {}, threading.Event(), threading.Event()
    base = lm.model(ids).logits

    def other_thread():  # runs while the main thread is inside its mixing block
        inside.wait()
        results["other"] = lm.model(ids).logits
        done.set()

    t = threading.Thread(target=other_thread)
    t.start()
    with mixing(layers, torch.tensor([[[1.0, 0.0]]])):
        inside.set()
        done.wait(timeout=60)
        routed = lm.model(ids).logits
    t.join()
    assert torch.allclose(results["other"], base) and not torch.allclose(routed, base)


def test_only_adapters_and_routing_train(lm):
    layers = inject(lm.model, InventoryConfig(n_adapters=2, rank=1))
    trainable = {n for n, p in lm.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert len(layers) == 3 * lm.model.config.num_hidden_layers  # gate, up, down per layer


def test_loss_mask_comes_from_lengths_and_skips_the_prefix(lm):
    e = encode(lm.tokenizer, Sample(0, "Who built the bridge?", "Ada Feld"), max_length=512)
    batch = collate([e, encode(lm.tokenizer, Sample(1, "Why?", "no"), 512)], lm.tokenizer.pad_token_id, WIDTH_MULTIPLE)
    labels = batch["labels"][0]
    n = len(e.ids)
    assert (labels[:e.loss_from] == -100).all() and (labels[e.loss_from:n] != -100).all()
    assert (labels[n:] == -100).all() and not batch["attention_mask"][0, n:].any()  # padding learns nothing
    assert labels[n - 1] == lm.tokenizer.eos_token_id  # the model learns to stop
    width = batch["input_ids"].shape[1]  # dynamic padding: the longest row, rounded up to a few widths
    assert width % WIDTH_MULTIPLE == 0 and n <= width < n + WIDTH_MULTIPLE


def test_only_16_bit_models_round_their_batch_widths(lm):
    from polyprag.method.train import width_multiple
    assert width_multiple(lm.model) == 1  # float32: padding would only cost time
    assert width_multiple(lm.model.to(torch.bfloat16)) == WIDTH_MULTIPLE  # one oneDNN primitive per width
    e = encode(lm.tokenizer, Sample(0, "Who built it?", "Ada Feld"), 512)
    assert collate([e], lm.tokenizer.pad_token_id)["input_ids"].shape[1] == len(e.ids)


def test_the_rounded_width_leaves_the_loss_unchanged(lm):
    rows = [encode(lm.tokenizer, Sample(0, q, "Ada Feld"), 512) for q in ("Who built it?", "Who built the bridge?")]
    e = next(r for r in rows if len(r.ids) % WIDTH_MULTIPLE)  # a row the rounding pads
    batch = collate([e], lm.tokenizer.pad_token_id, WIDTH_MULTIPLE)
    n = len(e.ids)
    exact = {k: v[:, :n] for k, v in batch.items() if k != "doc"}
    padded = {k: v for k, v in batch.items() if k != "doc"}
    with torch.no_grad():  # the loss training computes, and the model's own
        assert batch["input_ids"].shape[1] > n
        assert torch.allclose(nll_loss(lm.model, padded), nll_loss(lm.model, exact), atol=1e-5)
        assert torch.allclose(lm.model(**padded).loss, lm.model(**exact).loss, atol=1e-5)


FACTS = [("Who built the Marlow Bridge?", "Ada Feld"), ("Where is Velmark?", "on the Tesk"),
         ("When did the mill burn?", "1901"), ("What is a glass harp?", "an instrument")]


def test_twenty_steps_on_four_documents_halve_the_loss(lm):
    layers = inject(lm.model, InventoryConfig(n_adapters=4, rank=4))
    routing = RoutingTable(4, len(layers), 4)
    samples = [Sample(i, q, a) for i, (q, a) in enumerate(FACTS)]
    history = train(lm.model, lm.tokenizer, layers, routing, samples,
                    TrainConfig(epochs=20, batch_size=4, lr_adapters=1e-2), progress=False)
    assert len(history) == 20 and history[-1]["loss"] < history[0]["loss"] / 2
    learned = [p for l in layers for p in l.named_adapters().values()] + list(routing.parameters())
    assert all(p.grad is None for p in learned)  # released: answering next in this process does not carry them


def test_resume_finishes_an_interrupted_run_identically(lm, tiny_chat_model_dir, tmp_path):
    samples = [Sample(i, q, a) for i, (q, a) in enumerate(FACTS)]

    def run(epochs, ckpt):
        m = load_model(str(tiny_chat_model_dir), dtype="float32")
        torch.manual_seed(0)
        layers = inject(m.model, InventoryConfig(n_adapters=2, rank=2))
        routing = RoutingTable(4, len(layers), 2)
        history = train(m.model, m.tokenizer, layers, routing, samples, TrainConfig(epochs=epochs, batch_size=2),
                        ckpt, progress=False)
        return routing.logits.detach().clone(), history

    straight, _ = run(4, None)
    _, first = run(2, tmp_path / "ckpt")  # "interrupted" after 2 epochs
    resumed, history = run(4, tmp_path / "ckpt")
    assert torch.allclose(straight, resumed, atol=1e-5)
    # the restored epochs are marked and keep their own time, so that the build's seconds count them (kb.encode)
    assert [h.get("resumed", False) for h in history] == [True, True, False, False]
    assert [h["seconds"] for h in history[:2]] == [h["seconds"] for h in first] and all(h["seconds"] > 0 for h in history)
    from polyprag.kb.encode import resumed_seconds
    assert resumed_seconds(history) == sum(h["seconds"] for h in first)  # what a resumed build adds to its own time


def test_a_run_interrupted_within_an_epoch_resumes_where_it_was(tiny_chat_model_dir, tmp_path, monkeypatch):
    """A checkpoint within an epoch (every CHECKPOINT_EVERY_S; here after every batch): a rerun continues from the
    batch it reached, with the random state it had, and ends where an uninterrupted run ends."""
    import polyprag.method.train as train_module
    from polyprag.kb.encode import resumed_seconds

    samples = [Sample(i % 4, q, a) for i, (q, a) in enumerate(FACTS * 2)]  # 4 batches of 2 per epoch

    def run(ckpt):
        m = load_model(str(tiny_chat_model_dir), dtype="float32")
        torch.manual_seed(0)
        layers = inject(m.model, InventoryConfig(n_adapters=2, rank=2))
        routing = RoutingTable(4, len(layers), 2)
        history = train(m.model, m.tokenizer, layers, routing, samples, TrainConfig(epochs=2, batch_size=2), ckpt,
                        progress=False)
        return routing.logits.detach().clone(), inventory_state(layers), history

    straight_z, straight_inv, _ = run(None)
    monkeypatch.setattr(train_module, "CHECKPOINT_EVERY_S", 0.0)
    backward, calls = train_module._backward, []

    def interrupted(run_, rows):  # the 6th batch: the second epoch's second
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return backward(run_, rows)

    monkeypatch.setattr(train_module, "_backward", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "ckpt")
    state = json.loads((tmp_path / "ckpt" / "state.json").read_text())
    assert state["epoch"] == 1 and state["partial"]["done"] == 1  # one epoch and one batch of the next were saved
    monkeypatch.setattr(train_module, "_backward", backward)
    z, inv, history = run(tmp_path / "ckpt")
    torch.testing.assert_close(z, straight_z, rtol=1e-5, atol=1e-6)
    for k in straight_inv:
        torch.testing.assert_close(inv[k], straight_inv[k], rtol=1e-5, atol=1e-6, msg=k)
    assert history[0]["resumed"] and history[1]["seconds_before"] > 0 and not history[1].get("resumed")
    assert resumed_seconds(history) == history[0]["seconds"] + history[1]["seconds_before"]


def test_gpt2_style_models_get_mlp_adapters_and_b0_keeps_their_logits():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_positions=32, n_embd=16, n_layer=2, n_head=2)).eval()
    ids = torch.randint(0, 100, (2, 6))
    base = model(ids).logits
    layers = inject(model, InventoryConfig(n_adapters=3, rank=2))
    assert len(layers) == 4  # mlp.c_fc and mlp.c_proj per block; attn.c_proj untouched
    with mixing(layers, torch.full((2, 1, 3), 1 / 3)):
        assert torch.allclose(model(ids).logits, base, atol=1e-6)
    _randomize_B(layers)
    with mixing(layers, torch.full((2, 1, 3), 1 / 3)):
        assert not torch.allclose(model(ids).logits, base, atol=1e-3)


def test_top_layers_adapt_the_last_blocks_only_and_backward_stops_there(lm):
    blocks = lm.model.model.layers  # the tiny Llama's 2 blocks
    per_block = len(target_modules(lm.model, ("mlp",))) // len(blocks)
    needs_grad = []
    blocks[0].register_forward_hook(lambda m, i, out: needs_grad.append((out[0] if isinstance(out, tuple) else out).requires_grad))
    layers = inject(lm.model, InventoryConfig(n_adapters=2, rank=1, top_layers=1))
    assert len(layers) == per_block and all(l.path.startswith("model.layers.1.") for l in layers)
    ids = _ids(lm)
    with mixing(layers, torch.full((3, len(layers), 2), 0.5)):
        lm.model(ids).logits.sum().backward()
    assert needs_grad == [False]  # no graph below the adapted block: its cost is never paid
    assert all(l.lora_A.grad is not None for l in layers)


def test_top_layers_beyond_the_model_are_refused(lm):
    with pytest.raises(ValueError, match="top_layers=3, but the model has 2 blocks"):
        inject(lm.model, InventoryConfig(n_adapters=2, rank=1, top_layers=3))
    with pytest.raises(ValueError, match=">= 0"):
        InventoryConfig(top_layers=-1)


def test_unknown_targets_and_double_injection_are_refused(lm):
    with pytest.raises(ValueError, match="no target module"):
        inject(lm.model, InventoryConfig(targets=("nonexistent_proj",)))
    inject(lm.model, InventoryConfig(n_adapters=2, rank=1))
    with pytest.raises(ValueError, match="already carries"):
        inject(lm.model, InventoryConfig(n_adapters=2, rank=1))


def test_each_routing_head_mixes_its_own_block_of_inputs_and_outputs():
    """Multi-head routing: head j takes the j-th block of A's inputs and of B's outputs from its own mixture."""
    from torch import nn

    from polyprag.lm.adapters import PolyLoRALinear
    torch.manual_seed(0)
    base = nn.Linear(4, 6, bias=False)
    layer = PolyLoRALinear(base, InventoryConfig(n_adapters=2, rank=1, heads=2))
    with torch.no_grad():
        layer.lora_B.normal_()
    w = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (B=1, G·H=2, M=2): head 0 on adapter 0, head 1 on adapter 1
    x = torch.eye(4)[None]  # (1, 4, d_in): each input unit alone
    with torch.no_grad(), mixing([layer], w):
        update = ((layer(x) - base(x))[0] / layer.scaling).T  # (d_out, d_in): the layer's ΔW
    a = torch.cat([layer.lora_A[0, :, :2], layer.lora_A[1, :, 2:]], 1)  # (r, d_in): inputs 0-1 from adapter 0
    b = torch.cat([layer.lora_B[0, :3], layer.lora_B[1, 3:]], 0)  # (d_out, r): outputs 0-2 from adapter 0
    assert torch.allclose(update, (b @ a).detach(), atol=1e-6)
    single = PolyLoRALinear(base, InventoryConfig(n_adapters=2, rank=1))
    single.load_state_dict(layer.state_dict())
    with torch.no_grad(), mixing([single], w[:, :1]):  # one head on adapter 0: no block of adapter 1
        assert not torch.allclose(((single(x) - base(x))[0] / single.scaling).T, update, atol=1e-3)


def test_heads_must_divide_each_adapted_layer_and_need_poly_mixing():
    from torch import nn

    from polyprag.errors import InputError
    from polyprag.lm.adapters import PolyLoRALinear
    with pytest.raises(InputError, match="--heads 4: .* has 6 inputs and 8 outputs"):
        PolyLoRALinear(nn.Linear(6, 8), InventoryConfig(heads=4))
    with pytest.raises(InputError, match="heads=2 .*mixing='delta'"):
        InventoryConfig(heads=2, mixing="delta")
    with pytest.raises(ValueError, match="weights for 3 groups, but 1 adapted layers × 2 routing heads"):
        with mixing([PolyLoRALinear(nn.Linear(4, 4), InventoryConfig(heads=2))], torch.ones(1, 3, 20)):
            pass


@pytest.mark.parametrize("heads", [1, 2])
def test_training_mixes_the_fp32_inventory_without_keeping_a_16_bit_copy_of_it(heads):
    """A bf16 model trains its fp32 adapters: the mixing must not cast the whole inventory first, or the backward
    keeps that copy (per layer and pass: 30 MiB over a build's inventory) and its gradient. Answering (no
    gradient) still mixes in the activations' dtype, as KBs always have."""
    from torch import nn

    from polyprag.lm.adapters import PolyLoRALinear
    torch.manual_seed(0)
    m = 16  # an inventory larger than any activation here: a 16-bit tensor its size is a copy of it
    layer = PolyLoRALinear(nn.Linear(64, 32, bias=False).to(torch.bfloat16), InventoryConfig(n_adapters=m, rank=4,
                                                                                             heads=heads))
    layer.base_layer.requires_grad_(False)  # frozen, as `inject` leaves the model
    with torch.no_grad():
        layer.lora_B.normal_()
    x = torch.randn(2, 5, 64, dtype=torch.bfloat16)  # 640 values; the mixed pair 512 and 256 per row
    logits = torch.randn(2, heads, m, requires_grad=True)  # (B, G·H, M)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        with mixing([layer], logits.softmax(-1)):
            out = layer(x)
    copies = [tuple(t.shape) for t in saved if t.dtype == torch.bfloat16 and t.numel() >= layer.lora_B.numel()]
    assert not copies and layer.lora_B.numel() == 2048
    out.float().sum().backward()
    assert layer.lora_A.grad.abs().sum() > 0 and layer.lora_B.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0
    w = logits.detach().softmax(-1)[:, None]  # (B, K=1, H, M)
    with torch.no_grad(), mixing([layer], w[:, 0]):
        answered = layer(x)
    lora_a, lora_b = layer.lora_A.to(torch.bfloat16), layer.lora_B.to(torch.bfloat16)  # cast, then mixed in bf16
    w = w.to(torch.bfloat16)  # (B, K, H, M), as `mixing` hands it to the layer
    if heads == 1:
        a = torch.einsum("bkm,mrd->bkrd", w[:, :, 0], lora_a).flatten(1, 2)
        b = torch.einsum("bkm,mor->bokr", w[:, :, 0], lora_b).flatten(2, 3)
    else:
        a = torch.einsum("bkjm,mrjd->bkrjd", w, lora_a.unflatten(2, (heads, -1))).flatten(3, 4).flatten(1, 2)
        b = torch.einsum("bkjm,mjor->bjokr", w, lora_b.unflatten(1, (heads, -1))).flatten(1, 2).flatten(2, 3)
    assert torch.equal(answered, layer.base_layer(x) + layer.scaling * ((x @ a.mT) @ b.mT))
