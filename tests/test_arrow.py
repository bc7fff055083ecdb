"""Arrow routing rows (method.arrow): prototypes, scores, logits that mix top-k softmax weights, the bench row."""

import json

import pytest
import torch

from polyprag.cli import main
from polyprag.kb.knowledge import KnowledgeBase
from polyprag.errors import InputError
from polyprag.lm.adapters import InventoryConfig, inject
from polyprag.lm.models import load_model
from polyprag.method.arrow import arrow_logits, document_scores, prototypes
from polyprag.method.routing import masked_weights
from polyprag.text.corpus import Document


@pytest.fixture
def lm(tiny_chat_model_dir):
    return load_model(str(tiny_chat_model_dir))


def _trained_layers(lm, **config):
    layers = inject(lm.model, InventoryConfig(n_adapters=4, rank=2, **config))
    torch.manual_seed(3)
    with torch.no_grad():
        for layer in layers:
            layer.lora_B.normal_(0, 0.5)
    return layers


def test_prototypes_are_the_top_right_singular_vectors_of_each_adapter(lm):
    layer = _trained_layers(lm)[0]
    protos = prototypes(layer)  # (M, d_in)
    for m in range(4):
        delta = layer.lora_B[m].detach() @ layer.lora_A[m].detach()  # (d_out, d_in)
        top = torch.linalg.svd(delta).Vh[0]  # (d_in,)
        assert torch.isclose(protos[m].norm(), torch.tensor(1.0), atol=1e-5)
        assert abs(float(protos[m] @ top)) == pytest.approx(1.0, abs=1e-4)  # a singular vector's sign is free


def test_scores_read_each_layers_input_and_ignore_padding(lm):
    layers = _trained_layers(lm)
    short = Document("a", "Orla Pell", "Orla Pell was a glassblower.")
    long = Document("b", "Velmark", "Velmark is a harbour town of glass works, ferries and a salt market. " * 3)
    alone = document_scores(lm, layers, [short])
    batched = document_scores(lm, layers, [long, short])
    assert batched.shape == (2, len(layers), 4) and (batched > 0).all()
    assert torch.allclose(alone[0], batched[1], rtol=1e-4, atol=1e-6)  # right padding is masked out
    assert not torch.allclose(batched[0], batched[1])


def test_logits_mix_a_softmax_of_the_top_k_scores_and_nothing_else():
    scores = torch.tensor([[[4.0, 1.0, 3.0, 0.5, 2.0], [0.0, 0.1, 0.2, 0.3, 0.4]]])  # (N=1, L=2, M=5)
    w = masked_weights(arrow_logits(scores, groups=2, top_k=3))
    expected = torch.zeros(5).index_put((torch.tensor([0, 2, 4]),), torch.softmax(torch.tensor([4.0, 3.0, 2.0]), 0))
    assert torch.allclose(w[0, 0], expected, atol=1e-5)
    assert (w[0, 1, :2] == 0).all() and w[0, 1, 2:].sum() == pytest.approx(1.0, abs=1e-5)
    coarse = masked_weights(arrow_logits(scores, groups=1, top_k=2))  # one row: the layers' scores averaged
    assert coarse.shape == (1, 1, 5) and (coarse[0, 0] > 0).tolist() == [True, False, True, False, False]
    heads = masked_weights(arrow_logits(scores, groups=4, heads=2, top_k=3))  # each layer's 2 heads alike
    assert torch.equal(heads[:, 0::2], w) and torch.equal(heads[:, 1::2], w)
    with pytest.raises(InputError, match="--heads"):
        arrow_logits(scores, groups=3)


def test_bench_answers_poly_arrow_from_polys_own_knowledge_base(tiny_chat_model_dir, tmp_path):
    out = tmp_path / "run"
    assert main(["-q", "bench", "--dataset", "sample", "--model", str(tiny_chat_model_dir), "--out", str(out),
                 "--n", "3", "--epochs", "1", "--max-new-tokens", "3", "--adapters", "4", "--rank", "2",
                 "--methods", "poly,poly-arrow"]) == 0
    by = {r["method"]: r for r in json.loads((out / "results.json").read_text())["rows"]}
    assert by["poly-arrow"]["encode_s_per_doc"] == by["poly"]["encode_s_per_doc"]  # one KB, built once
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("kb")) == ["kb"]
    kb = KnowledgeBase.load(out / "kb", str(tiny_chat_model_dir))
    learned, routed = kb.routing.inference_weights(), kb.with_arrow_routing().routing.inference_weights()
    assert routed.shape == learned.shape and (learned > 0).all()  # the learned rows use every adapter
    assert ((routed > 0).sum(-1) == 3).all()  # Arrow's rows: each layer's top 3 of the 4 adapters
