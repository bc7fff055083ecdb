"""The training loss with the output head in chunks: the same value and gradients as the model's own loss."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import (Gemma3ForCausalLM, Gemma3TextConfig, GPT2Config, GPT2LMHeadModel, LlamaConfig,
                          LlamaForCausalLM)

from polyprag.lm.adapters import InventoryConfig, inject, mixing
from polyprag.method.loss import nll_loss

V = 300


def _llama():
    return LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, initializer_range=0.5))


def _gemma(cap):
    return Gemma3ForCausalLM(Gemma3TextConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                              num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                              final_logit_softcapping=cap, initializer_range=0.5))


def _gpt2():
    return GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, initializer_range=0.5))


def _batch():
    torch.manual_seed(3)
    ids = torch.randint(0, V, (3, 40))  # 40 positions × 300 words: several chunks of the head's 16+
    attn = torch.ones_like(ids)
    attn[1, 30:] = 0  # a padded row
    labels = ids.clone()
    labels[:, :7] = -100  # the prompt's prefix
    labels[attn == 0] = -100
    return {"input_ids": ids, "attention_mask": attn, "labels": labels}


def _assert_same_loss_and_gradients(model, params):
    results = []
    for loss_fn in (lambda b: model(**b).loss, lambda b: nll_loss(model, b)):
        loss = loss_fn(_batch())
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in params]))
        model.zero_grad(set_to_none=True)
    (want, want_g), (got, got_g) = results
    assert torch.allclose(got, want, atol=1e-5)
    assert all(torch.allclose(g, e, atol=1e-5, rtol=1e-4) for g, e in zip(got_g, want_g))


@pytest.mark.parametrize("make", [_llama, lambda: _gemma(None), lambda: _gemma(5.0), _gpt2],
                         ids=["llama", "gemma3", "gemma3-softcap", "gpt2"])
def test_chunked_head_gives_the_models_loss_and_gradients(make, monkeypatch):
    torch.manual_seed(0)
    model = make().float()
    layers = inject(model, InventoryConfig(n_adapters=3, rank=2))
    with torch.no_grad():
        for l in layers:
            l.lora_B.normal_(0, 0.3)
    params = [p for l in layers for p in (l.lora_A, l.lora_B)]
    w = torch.rand(3, len(layers), 3).softmax(-1)
    monkeypatch.setattr("polyprag.method.loss.HEAD_CHUNK_BYTES", 1)  # chunks of 16 positions: many of them
    with mixing(layers, w):
        _assert_same_loss_and_gradients(model, params)


def test_chunked_head_through_peft_as_prag_trains(monkeypatch):
    torch.manual_seed(0)
    monkeypatch.setattr("polyprag.method.loss.HEAD_CHUNK_BYTES", 1)  # several chunks, as a PRAG row of SmolLM2 has
    model = get_peft_model(_llama(), LoraConfig(r=2, lora_alpha=32, target_modules=["up_proj"], init_lora_weights=False))
    _assert_same_loss_and_gradients(model, [p for p in model.parameters() if p.requires_grad])


def test_a_trainable_output_head_is_refused_not_silently_left_without_gradient():
    model = _llama().float()  # every weight trainable, the head included
    with pytest.raises(ValueError, match="freeze it"):
        nll_loss(model, _batch())
