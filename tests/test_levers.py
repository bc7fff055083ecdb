"""Routing that can specialise: document embeddings and k-means, cluster init, distillation, diagnostics."""

import json
from dataclasses import replace

import pytest
import torch

from polyprag.lm.adapters import InventoryConfig, adapter_cosine, inject, mixing
from polyprag.lm.generate import GenerationConfig
from polyprag.text.augment import Sample
from polyprag.cli import main
from polyprag.text.corpus import Document, write_jsonl
from polyprag.method.embed import embed_documents, kmeans
from polyprag.errors import InputError
from polyprag.kb.knowledge import BuildConfig, KnowledgeBase
from polyprag.lm.models import load_model
from polyprag.method.routing import Router, RoutingTable, entropy_stats
from polyprag.method.config import TrainConfig
from polyprag.method.train import _hidden_loss, encode, encode_distill, teacher_targets, train

DOCS = [Document("marlow", "Marlow Bridge", "Marlow Bridge was finished in 1862 by the engineer Ada Feld."),
        Document("velmark", "Velmark", "Velmark is a town on the river Tesk. It was founded in 1412 by Orrin Pell."),
        Document("glass", "Glass harp", "The glass harp was invented in 1741 by Richard Pockrich in Dublin."),
        Document("mill", "Tesk mill", "The Tesk mill burned down in 1901 and was rebuilt in 1903 by Ilse Brandt.")]
FACTS = [("Who built the Marlow Bridge?", "Ada Feld"), ("Where is Velmark?", "on the Tesk"),
         ("Who invented the glass harp?", "Richard Pockrich"), ("When did the mill burn?", "1901")]


@pytest.fixture()
def lm(tiny_chat_model_dir):
    return load_model(str(tiny_chat_model_dir), dtype="float32")


def test_kmeans_separates_two_clear_groups_and_is_seeded():
    gen = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.tensor([1.0, 0, 0]) + 0.05 * torch.randn(6, 3, generator=gen), dim=1)
    b = torch.nn.functional.normalize(torch.tensor([0, 1.0, 0]) + 0.05 * torch.randn(6, 3, generator=gen), dim=1)
    assign, centres = kmeans(torch.cat([a, b]), 2, seed=3)
    assert len(set(assign[:6].tolist())) == 1 and len(set(assign[6:].tolist())) == 1 and assign[0] != assign[6]
    assert torch.equal(assign, kmeans(torch.cat([a, b]), 2, seed=3)[0])
    assert centres.shape == (2, 3) and torch.allclose(centres.norm(dim=1), torch.ones(2))
    assert centres[assign[0]].argmax() == 0 and centres[assign[6]].argmax() == 1
    assert kmeans(a[:3], 5)[0].tolist() == [0, 1, 2]  # fewer rows than clusters: one cluster each


def test_document_embeddings_are_unit_vectors_and_do_not_depend_on_the_batch(lm):
    x = embed_documents(lm, DOCS, batch_size=4)
    assert x.shape == (4, lm.model.config.hidden_size)
    assert torch.allclose(x.norm(dim=1), torch.ones(4), atol=1e-5)
    one_by_one = torch.cat([embed_documents(lm, [d]) for d in DOCS])  # no padding: same vectors
    assert torch.allclose(x, one_by_one, atol=1e-4)


def test_per_layer_entropy_sees_layers_that_each_pick_one_adapter_but_not_the_same():
    weights = torch.eye(4).unsqueeze(0)  # (N=1, G=4, M=4): layer g uses adapter g alone
    stats = entropy_stats(weights)
    assert stats["entropy_per_layer"] < 1e-6 and abs(stats["effective_adapters_per_layer"] - 1) < 1e-6
    assert stats["entropy"] > 0.999  # averaged over layers first, the same document looks uniform
    same = torch.zeros(1, 4, 4)
    same[..., 2] = 1  # every layer on adapter 2: both measures agree
    assert entropy_stats(same)["entropy"] < 1e-6 and entropy_stats(same)["entropy_per_layer"] < 1e-6


def test_cluster_init_starts_each_document_on_its_clusters_adapter():
    routing = RoutingTable(3, 2, 4)
    routing.init_from_clusters(torch.tensor([2, 0, 2]), strength=3.0)
    assert routing.logits.argmax(-1).tolist() == [[2, 2], [0, 0], [2, 2]]
    assert set(routing.logits.unique().tolist()) == {-3.0, 3.0}
    stats = entropy_stats(routing.inference_weights())
    assert stats["entropy"] < 0.9 and stats["effective_adapters"] < 4
    assert entropy_stats(RoutingTable(3, 2, 4).inference_weights())["entropy"] > 0.999  # the default: uniform


def test_a_cluster_build_records_its_init_and_leaves_uniform(lm, tiny_chat_model_dir, tmp_path):
    config = BuildConfig(inventory=InventoryConfig(n_adapters=2, rank=2), routing_init="cluster",
                         training=TrainConfig(epochs=1, batch_size=4))
    kb = KnowledgeBase.build(DOCS[:3], lm, config, progress=False)
    assert kb.manifest.build.routing_init == "cluster" and kb.manifest.build.routing_strength == 3.0
    assert kb.manifest.diagnostics[0]["entropy"] < 0.9
    kb.save(tmp_path / "kb")
    loaded = KnowledgeBase.load(tmp_path / "kb", load_model(str(tiny_chat_model_dir), dtype="float32"))
    assert torch.equal(loaded.routing.centroids, kb.routing.centroids)
    # Poly-z on a cluster KB: a new row starts on its nearest centroid's adapter, as a built row did
    nearest = loaded.routing.nearest_cluster(embed_documents(loaded.lm, DOCS[3:]))
    loaded.add(DOCS[3:], TrainConfig(epochs=1, batch_size=4, lr_routing=0.0), progress=False)
    assert loaded.routing.logits[3].argmax(-1).unique().tolist() == nearest.tolist()
    assert loaded.routing.logits[3].abs().max() == 3.0
    with pytest.raises(InputError, match="routing_init='topics'"):
        BuildConfig(routing_init="topics")


def test_a_router_fitted_to_a_cluster_table_reproduces_its_choices():
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(30, 16, generator=gen), dim=1)
    assign, _ = kmeans(x, 4, seed=0)
    table = RoutingTable(30, 2, 4)
    table.init_from_clusters(assign, strength=3.0)
    router = Router(16, 2, 4)
    router.fit(x, table.logits.detach())
    z = router(x)  # (30, 2, 4)
    assert z.shape == (30, 2, 4) and torch.equal(z.argmax(-1), table.logits.argmax(-1))
    assert torch.allclose(router.centre, x.mean(0))


def test_an_embedding_router_trains_then_writes_its_rows_and_routes_new_documents(lm, tiny_chat_model_dir, tmp_path):
    config = BuildConfig(inventory=InventoryConfig(n_adapters=2, rank=2), routing_init="cluster", router="embedding",
                         training=TrainConfig(epochs=2, batch_size=2, lr_router=1e-2))
    kb = KnowledgeBase.build(DOCS[:3], lm, config, progress=False)
    x = embed_documents(load_model(str(tiny_chat_model_dir), dtype="float32"), DOCS[:3])
    assert kb.routing.embeddings is None  # materialised: answering reads the table ...
    # ... which holds the router's rows, as stored (fp16: 2^-9 apart near 3)
    assert torch.allclose(kb.routing.logits, kb.routing.router(x), atol=2e-3)
    start = RoutingTable(*kb.routing.logits.shape)  # the router as fitted before training
    start.init_from_clusters(kmeans(x, 2, seed=0)[0], 3.0)
    start.attach_router(x)
    assert not torch.allclose(start.router.linear.weight, kb.routing.router.linear.weight)  # training moved it
    assert kb.manifest.build.router == "embedding" and kb.manifest.diagnostics[-1]["routing_grad_norm"] > 0
    kb.save(tmp_path / "kb")
    loaded = KnowledgeBase.load(tmp_path / "kb", load_model(str(tiny_chat_model_dir), dtype="float32"))
    assert torch.equal(loaded.routing.router.linear.weight, kb.routing.router.linear.weight)
    # Added without training: a new document's row is the router's for its embedding
    loaded.add(DOCS[3:], progress=False, no_train=True)
    new = loaded.routing.router(embed_documents(loaded.lm, DOCS[3:]))
    assert torch.allclose(loaded.routing.logits[3:], new, atol=2e-3)
    assert torch.equal(loaded.routing.logits[:3], kb.routing.logits)  # old rows untouched
    assert loaded.manifest.additions[-1]["epochs"] == 0 and loaded.manifest.additions[-1]["diagnostics"] == []
    with pytest.raises(InputError, match="--routing-init cluster with --router embedding"):
        BuildConfig(routing_init="uniform", router="embedding")
    plain = KnowledgeBase.build(DOCS[:3], load_model(str(tiny_chat_model_dir), dtype="float32"),
                                BuildConfig(inventory=InventoryConfig(n_adapters=2, rank=2), routing_init="uniform",
                                            training=TrainConfig(epochs=1, batch_size=4)), progress=False)
    with pytest.raises(InputError, match="adding without training needs content-based routing"):
        plain.add(DOCS[3:], progress=False, no_train=True)


def test_distillation_sequences_end_in_the_same_answer_tokens(lm):
    tok = lm.tokenizer
    student, teacher = encode_distill(tok, Sample(0, "Who built it?", "Ada Feld", source=DOCS[0].content()), 512)
    answer = student.ids[student.answer_from:]
    assert teacher[-len(answer):] == answer and len(teacher) > len(student.ids)  # the teacher also reads the doc
    _, long_teacher = encode_distill(tok, Sample(0, "Who built it?", "Ada Feld", source=DOCS[0].content() * 40), 64)
    assert len(long_teacher) <= 64 and long_teacher[-len(answer):] == answer  # cut from the passage, not the answer
    # --distill-shots: the teacher reads the reader's answer examples before the document, as rag does
    from polyprag.lm.prompts import EXAMPLES
    _, shown = encode_distill(tok, Sample(0, "Who built it?", "Ada Feld", source=DOCS[0].content()), 512, shots=True)
    text = tok.decode(shown)
    assert shown[-len(answer):] == answer and EXAMPLES[0][1] in text and DOCS[0].text[:30] in text
    with pytest.raises(InputError, match="--distill-shots"):
        TrainConfig(distill_shots=True)  # objective nll: no teacher to shape
    teacher_targets(lm.model, [(student, teacher)], top_k=5, progress=False)
    values, index = student.teacher
    assert values.shape == index.shape == (len(answer), 5) and (values <= 0).all()
    assert (values[:, :-1] >= values[:, 1:]).all()  # top-k, best first


@pytest.mark.parametrize("objective", ["distill", "both"])
def test_distillation_training_lowers_the_kl_to_the_teacher(lm, objective):
    layers = inject(lm.model, InventoryConfig(n_adapters=2, rank=4))
    routing = RoutingTable(4, len(layers), 2)
    samples = [Sample(i, q, a, source=DOCS[i].content()) for i, (q, a) in enumerate(FACTS)]
    history = train(lm.model, lm.tokenizer, layers, routing, samples,
                    TrainConfig(epochs=8, batch_size=4, lr_adapters=1e-2, objective=objective), progress=False)
    assert history[-1]["loss"] < history[0]["loss"]


def test_hidden_state_alignment_reads_the_teachers_answer_positions_and_trains(lm):
    tok = lm.tokenizer
    student, teacher = encode_distill(tok, Sample(0, "Who built it?", "Ada Feld", source=DOCS[0].content()), 512)
    teacher_targets(lm.model, [(student, teacher)], top_k=5, progress=False, hidden=True)
    n = len(student.ids) - student.answer_from
    with torch.no_grad():  # the teacher's own sequence: its hidden states at the positions that predict the answer
        own = lm.model(input_ids=torch.tensor([teacher]), output_hidden_states=True).hidden_states[-1][0]
    assert torch.allclose(student.teacher_hidden, own[len(teacher) - n - 1:len(teacher) - 1], atol=1e-5)
    as_teacher = replace(student, ids=teacher, answer_from=len(teacher) - n)
    assert float(_hidden_loss(own[None], [as_teacher])) == pytest.approx(0.0, abs=1e-5)  # its own states: aligned
    layers = inject(lm.model, InventoryConfig(n_adapters=2, rank=4))
    samples = [Sample(i, q, a, source=DOCS[i].content()) for i, (q, a) in enumerate(FACTS)]
    history = train(lm.model, lm.tokenizer, layers, RoutingTable(4, len(layers), 2), samples,
                    TrainConfig(epochs=8, batch_size=4, lr_adapters=1e-2, objective="distill", distill_hidden=1.0),
                    progress=False)
    assert history[-1]["loss"] < history[0]["loss"]


def test_distill_alone_needs_samples_without_a_passage(lm):
    layers = inject(lm.model, InventoryConfig(n_adapters=2, rank=2))
    shown = [Sample(0, "Who built it?", "Ada Feld", passage=DOCS[0].content(), source=DOCS[0].content())]
    with pytest.raises(InputError, match="objective 'distill' needs samples without a passage"):
        train(lm.model, lm.tokenizer, layers, RoutingTable(1, len(layers), 2), shown,
              TrainConfig(epochs=1, objective="distill"), progress=False)
    with pytest.raises(InputError, match="objective='kl'"):
        TrainConfig(objective="kl")
    with pytest.raises(InputError, match="--objective both"):
        TrainConfig(distill_hidden=1.0)  # alignment needs a teacher


def test_diagnostics_per_epoch_say_whether_adapters_and_routing_moved(lm):
    layers = inject(lm.model, InventoryConfig(n_adapters=3, rank=2))
    assert adapter_cosine(layers) is None  # B = 0: no direction yet
    routing = RoutingTable(4, len(layers), 3)
    samples = [Sample(i, q, a) for i, (q, a) in enumerate(FACTS)]
    history = train(lm.model, lm.tokenizer, layers, routing, samples, TrainConfig(epochs=2, batch_size=2),
                    progress=False)
    first = history[0]
    assert [e["epoch"] for e in history] == [1, 2]
    assert first["max_abs_z"] > 1e-3 and first["routing_grad_norm"] > 0  # the rows left their ±1e-3 start
    assert 0 < first["entropy"] <= 1 and 1 <= first["effective_adapters"] <= 3
    assert -1 <= first["adapter_cosine"] <= 1
    assert first["tokens"] == sum(len(encode(lm.tokenizer, s, 384).ids) for s in samples)  # the budget per epoch


def trained_routing(model_dir, clusters: torch.Tensor, config: TrainConfig) -> tuple[RoutingTable, list[dict]]:
    """Four documents' routing over 4 adapters, started leaning to `clusters` (uniform is an entropy maximum: no
    gradient there), trained on FACTS; returns the table and the epochs' records."""
    lm = load_model(str(model_dir))
    layers = inject(lm.model, InventoryConfig(n_adapters=4, rank=2))
    routing = RoutingTable(4, len(layers), 4)
    routing.init_from_clusters(clusters, strength=1.0)
    samples = [Sample(i, q, a) for i, (q, a) in enumerate(FACTS)]
    return routing, train(lm.model, lm.tokenizer, layers, routing, samples, config, progress=False)


def test_the_routing_entropy_penalty_makes_routing_sparser(tiny_chat_model_dir):
    def final_entropy(weight: float) -> float:
        config = TrainConfig(epochs=3, batch_size=2, routing_entropy=weight)
        return trained_routing(tiny_chat_model_dir, torch.arange(4), config)[1][-1]["entropy"]

    assert final_entropy(5.0) < final_entropy(0.0) - 0.05
    with pytest.raises(InputError, match="routing_entropy=-1"):
        TrainConfig(routing_entropy=-1)


def test_the_batch_entropy_is_high_when_documents_use_different_adapters_and_low_when_they_share_one():
    apart, together = RoutingTable(4, 2, 4), RoutingTable(4, 2, 4)
    with torch.no_grad():
        apart.logits.fill_(-8.0)
        together.logits.fill_(-8.0)
        for d in range(4):
            apart.logits[d, :, d] = 8.0  # document d on adapter d: each row peaked, the batch spread
            together.logits[d, :, 0] = 8.0  # every document on adapter 0: collapsed
    docs = torch.arange(4)
    assert apart.entropy(docs) < 0.05 and together.entropy(docs) < 0.05  # both sparse per document
    assert apart.batch_entropy(docs) > 0.95 and together.batch_entropy(docs) < 0.05  # only one spread


def test_the_balance_term_keeps_the_batch_spread_that_the_entropy_penalty_alone_lets_collapse(tiny_chat_model_dir):
    def final_spread(balance: float) -> float:
        config = TrainConfig(epochs=8, batch_size=4, routing_entropy=5.0, routing_balance=balance)
        routing, _ = trained_routing(tiny_chat_model_dir, torch.zeros(4, dtype=torch.long), config)  # all on 0
        return float(routing.batch_entropy(torch.arange(4)))

    alone, balanced = final_spread(0.0), final_spread(5.0)
    assert balanced > alone + 0.05, (alone, balanced)
    with pytest.raises(InputError, match="routing_balance=-1"):
        TrainConfig(routing_balance=-1)


def test_build_and_inspect_print_the_routing_diagnostics(tiny_chat_model_dir, tmp_path, capsys, monkeypatch):
    from polyprag import cli

    monkeypatch.setattr(cli.console, "width", 10_000)  # one line per row: rich would wrap the table's headers
    write_jsonl(DOCS, tmp_path / "docs.jsonl")
    kb = str(tmp_path / "kb")
    assert main(["build", str(tmp_path / "docs.jsonl"), "--out", kb, "--adapters", "2", "--rank", "2",
                 "--epochs", "2", "--routing-init", "cluster", "--objective", "both",
                 "--augment-cache", str(tmp_path / "c.jsonl"), "--model", str(tiny_chat_model_dir)]) == 0
    built = capsys.readouterr().out
    assert "training, per epoch" in built and "effective" in built
    assert main(["inspect", kb, "--json", str(tmp_path / "i.json")]) == 0
    shown = " ".join(capsys.readouterr().out.split())  # rich wraps lines to the terminal's width
    assert "effective adapters per document" in shown and "training, per epoch" in shown
    assert "within each layer: entropy" in shown and "entropy per layer" in shown
    report = json.loads((tmp_path / "i.json").read_text())
    assert 0 <= report["entropy_per_layer"] <= 1 and report["training"][-1]["entropy_per_layer"] >= 0
    assert [e["epoch"] for e in report["training"]] == [1, 2] and report["effective_adapters"] <= 2
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert manifest["training"]["objective"] == "both" and manifest["routing_init"] == "cluster"


def test_a_seeded_build_is_reproducible_byte_for_byte(tiny_chat_model_dir, tmp_path):
    config = BuildConfig(inventory=InventoryConfig(n_adapters=2, rank=2), routing_init="cluster",
                         training=TrainConfig(epochs=1, batch_size=2, objective="both"))
    for name in ("a", "b"):
        KnowledgeBase.build(DOCS, load_model(str(tiny_chat_model_dir), dtype="float32"), config, progress=False).save(tmp_path / name)
    for file in ("inventory.safetensors", "routing.safetensors"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def test_contrast_questions_ask_yes_no_and_either_or_from_the_documents_own_facts():
    from polyprag.text.augment import contrast_pairs, training_samples
    from polyprag.text.augment_rules import Augmentation, QAPair

    qa = (QAPair("When was Marlow Bridge finished?", "1862", "Marlow Bridge was finished in 1862."),
          QAPair("Who finished Marlow Bridge?", "Ada Feld", "It was finished by Ada Feld."))
    pairs = contrast_pairs(qa, ["1862", "Ada Feld", "1412", "Orrin Pell"], 3)
    assert pairs[0] == ("Is it true that Marlow Bridge was finished in 1862?", "yes")
    assert pairs[1] == ("Is it true that It was finished by Orrin Pell?", "no")  # a name for a name
    assert pairs[2] == ("When was Marlow Bridge finished: 1862 or 1412?", "1862")  # a year for a year
    assert contrast_pairs(qa, ["1862"], 2)[1][1] == "yes"  # no distractor of the same shape: a true statement
    augs = [Augmentation(d.id, d.text, qa, "rules") for d in DOCS[:2]]
    samples = training_samples(DOCS[:2], augs, context_qa=0, rewrite=False, contrast=2)
    assert len(samples) == 2 * (2 + 2) and all(s.source == DOCS[s.doc].content() for s in samples)
    assert len(training_samples(DOCS[:2], augs, context_qa=0, rewrite=False)) == 4  # off by default


def test_paraphrases_ask_each_fact_as_a_cloze_then_as_a_sentence_to_complete():
    from polyprag.text.augment import paraphrased, training_samples
    from polyprag.text.augment_rules import Augmentation, QAPair

    qa = QAPair("When was Marlow Bridge finished?", "1862", "Marlow Bridge was finished in 1862.")
    assert paraphrased(qa, "Marlow Bridge") == [
        "Marlow Bridge: Marlow Bridge was finished in ___. What fills the blank?",
        "Marlow Bridge: complete the sentence: Marlow Bridge was finished in …"]
    cloze = QAPair("Marlow Bridge was finished in ___. What fills the blank?", "1862", qa.full_answer)
    assert paraphrased(cloze, "") == ["complete the sentence: Marlow Bridge was finished in …"]  # never itself
    assert paraphrased(QAPair("Who?", "Ada Feld", "It was built in 1862."), "X") == []  # answer not in its sentence
    assert paraphrased(QAPair("Who?", "Ada Feld", "Ada Feld."), "X") == []  # the whole sentence: nothing to ask
    assert paraphrased(QAPair("Who?", "Ada", "Ada met Ada Feld in 1862."), "X") == []  # there twice: a giveaway
    augs = [Augmentation(d.id, d.text, (qa,), "rules") for d in DOCS[:2]]
    for n in (0, 1, 2):
        samples = training_samples(DOCS[:2], augs, context_qa=0, rewrite=False, paraphrases=n)
        assert len(samples) == 2 * (1 + n) and {s.answer for s in samples} == {"1862"}
        assert all(s.routed and s.passage is None for s in samples)  # facts, asked bare, through the routing


def test_title_questions_ask_for_the_documents_own_name_from_what_it_says():
    from polyprag.text.augment import title_questions, training_samples
    from polyprag.text.augment_rules import Augmentation, QAPair

    doc = Document("bbm", "The Bye Bye Man (film)", "The Bye Bye Man is a 2017 horror film directed by Stacy Title. "
                   "It stars Douglas Smith. The Bye Bye Man grossed $26 million. The Bye Bye Man is not The Bye Bye Man.")
    assert title_questions(doc, 3) == [  # no parenthesis; a sentence without the name, or with it twice, is skipped
        ("___ is a 2017 horror film directed by Stacy Title. What fills the blank?", "The Bye Bye Man"),
        ("___ grossed $26 million. What fills the blank?", "The Bye Bye Man")]
    assert title_questions(doc, 1) == title_questions(doc, 3)[:1] and title_questions(doc, 0) == []
    assert title_questions(Document("x", "", "No title here at all."), 2) == []
    lamp = Document("k", "Kerosene lamp", "Kerosene lamps have a wick. A Kerosene lamp burns paraffin oil.")
    assert title_questions(lamp, 2) == [("A ___ burns paraffin oil. What fills the blank?", "Kerosene lamp")]
    qa = (QAPair("Who directed The Bye Bye Man?", "Stacy Title", doc.text.split(". ")[0] + "."),)
    augs = [Augmentation(doc.id, doc.text, qa, "rules")]
    samples = training_samples([doc], augs, context_qa=0, rewrite=False, title_qa=2)
    assert [s.answer for s in samples] == ["Stacy Title", "The Bye Bye Man", "The Bye Bye Man"]
    assert all(s.routed and s.passage is None and s.source == doc.content() for s in samples)  # facts, bare
    assert len(training_samples([doc], augs, context_qa=0, rewrite=False)) == 1  # off by default


def test_format_samples_apart_from_facts_train_the_adapters_but_never_the_routing(lm):
    from polyprag.text.augment import training_samples
    from polyprag.text.augment_rules import Augmentation, QAPair

    qa = (QAPair("When was Marlow Bridge finished?", "1862", "Marlow Bridge was finished in 1862."),)
    augs = [Augmentation(d.id, d.text, qa, "rules") for d in DOCS[:2]]
    apart = training_samples(DOCS[:2], augs, context_qa=0, rewrite=False, contrast=2, format_routing="uniform")
    assert [s.routed for s in apart] == [True, False, False] * 2  # the fact routed, the yes/no and either-or not
    assert all(s.routed for s in training_samples(DOCS[:2], augs, context_qa=0, rewrite=False, contrast=2))

    layers = inject(lm.model, InventoryConfig(n_adapters=3, rank=2))
    routing = RoutingTable(4, len(layers), 3)
    before = routing.logits.detach().clone()
    format_only = [Sample(i, q, a, routed=False) for i, (q, a) in enumerate(FACTS)]
    history = train(lm.model, lm.tokenizer, layers, routing, format_only, TrainConfig(epochs=1, batch_size=2),
                    progress=False)
    assert torch.equal(routing.logits.detach(), before)  # uniform mixing: no gradient reaches any document's row
    assert adapter_cosine(layers) is not None and history[-1]["routing_grad_norm"] == 0  # the adapters learned
    assert BuildConfig(format_routing="uniform").format_routing == "uniform"
    with pytest.raises(InputError, match="format_routing='facts'"):
        BuildConfig(format_routing="facts")


@pytest.mark.parametrize("mixing_mode", ["poly", "delta"])
def test_summed_mixtures_add_up_the_documents_own_adapters(mixing_mode):
    from polyprag.lm.adapters import PolyLoRALinear

    torch.manual_seed(0)
    layer = PolyLoRALinear(torch.nn.Linear(6, 5), InventoryConfig(n_adapters=3, rank=2, mixing=mixing_mode))
    torch.nn.init.normal_(layer.lora_B)
    x = torch.randn(2, 4, 6)  # (B, T, d_in)
    w = torch.softmax(torch.randn(2, 2, 3), -1)  # (B, K=2, M)
    base = layer.base_layer(x)

    def delta(weights):  # (B, M) or (B, K, M)
        with mixing([layer], weights[:, None]):
            return layer(x) - base

    both = delta(w)
    assert torch.allclose(both, delta(w[:, 0]) + delta(w[:, 1]), atol=1e-5)
    assert torch.allclose(delta(w[:, :1]), delta(w[:, 0]), atol=1e-6)  # one document: the mean path


def test_sum_combination_answers_from_a_kb_and_pads_missing_hits(lm):
    config = BuildConfig(inventory=InventoryConfig(n_adapters=2, rank=2), combine="sum",
                         training=TrainConfig(epochs=1, batch_size=4))
    kb = KnowledgeBase.build(DOCS, lm, config, progress=False)
    from polyprag.text.retrieve import Hit
    hits = [[Hit("marlow", 2.0), Hit("mill", 1.0)], [Hit("velmark", 1.0)]]
    w = kb.summed_weights(hits)  # (Q, G, K, M)
    assert w.shape == (2, kb.routing.logits.shape[1], 2, 2) and (w[1, :, 1] == 0).all()
    answers = kb.answer(["Who built the Marlow Bridge?", "Where is Velmark?"], "poly", k=2, hits=hits,
                        generation=GenerationConfig(max_new_tokens=3), progress=False)
    assert len(answers) == 2 and kb.manifest.build.combine == "sum"
    with pytest.raises(InputError, match="combine='max'"):
        BuildConfig(combine="max")


def test_combine_strength_scales_only_poly_combines_mixture(lm, tmp_path):
    config = BuildConfig(inventory=InventoryConfig(n_adapters=2, rank=2), combine_strength=0.5,
                         training=TrainConfig(epochs=1, batch_size=4))
    kb = KnowledgeBase.build(DOCS, lm, config, progress=False)
    hits = kb.retrieve(["Who finished Marlow Bridge?"], 2)
    assert torch.allclose(kb.mixing_weights(hits, "poly-combine"), 0.5 * kb.mixing_weights(hits, "poly"))
    assert torch.allclose(kb.mixing_weights(hits, "poly").sum(-1), torch.ones(1, len(kb.layers)))  # poly as before
    kb.save(tmp_path / "kb")
    assert KnowledgeBase.load(tmp_path / "kb", lm.spec).manifest.build.combine_strength == 0.5
    with pytest.raises(InputError, match="combine_strength=0"):
        BuildConfig(combine_strength=0)
