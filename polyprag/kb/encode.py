"""Encoding: documents into adapter inventory + routing rows (the training stage of a knowledge base).

`encode` makes a fresh inventory and routing table for a corpus (`KnowledgeBase.build`, `retrain`); `extend`
trains routing rows, and optionally new adapters, for documents added to an existing one (`KnowledgeBase.add`,
Poly-z). Both work on the pieces (model, layers, routing table) and leave storing and answering to `knowledge`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from . import store
from ..lm.adapters import (InventoryConfig, PolyLoRALinear, grow_inventory, inject, inventory_state, old_part,
                           target_modules)
from ..text.augment import Augmentation, Sample, augment_documents, training_samples
from ..text.corpus import Document
from ..method.embed import embed_documents, kmeans
from ..errors import InputError
from .manifest import BaseModel, BuildConfig, Manifest
from ..lm.models import LoadedModel
from ..method.routing import RoutingTable
from ..method.config import TrainConfig
from ..method.train import train

log = logging.getLogger("polyprag")


@dataclass
class Encoded:
    layers: list[PolyLoRALinear]
    routing: RoutingTable
    augmentations: list[Augmentation]
    manifest: Manifest



def build_samples(docs: list[Document], augs: list[Augmentation], build: BuildConfig,
                  context_qa: int | None = None) -> list[Sample]:
    """The training samples of the build's recipe (`context_qa`: another count for documents added later)."""
    return training_samples(docs, augs, build.context_qa if context_qa is None else context_qa, build.rewrite,
                            build.contrast, build.format_routing, build.paraphrases, build.title_qa)

def encode(docs: list[Document], lm: LoadedModel, config: BuildConfig, cache: Path | None = None,
           checkpoint_dir: Path | None = None, progress: bool = True, reuse: list[Augmentation] = ()) -> Encoded:
    """Augment, inject a fresh inventory into lm.model, initialise routing and train both on every document.
    `reuse`: augmentations already made (a KB's own, when it is retrained), matched by document id."""
    fingerprint = store.model_fingerprint(lm.model)  # before injection: the base model alone
    _check_targets(lm, config.inventory)  # before the augmentation's work
    start = time.perf_counter()
    augs = _augment(docs, config, lm, cache, progress, reuse)
    embeddings = _embed(lm, docs) if config.routing_init == "cluster" else None  # before injection
    torch.manual_seed(config.training.seed)  # adapter and routing init are part of the seeded run
    layers = inject(lm.model, config.inventory)
    groups = (len(layers) if config.routing == "fine" else 1) * config.inventory.heads  # each layer's heads in turn
    routing = RoutingTable(len(docs), groups, config.inventory.n_adapters)
    if embeddings is not None:
        assign, routing.centroids = kmeans(embeddings, config.inventory.n_adapters, seed=config.training.seed)
        routing.init_from_clusters(assign, config.routing_strength)
    if config.router == "embedding":
        routing.attach_router(embeddings)
    samples = build_samples(docs, augs, config)
    log.info("training %d adapters on %d samples from %d documents", config.inventory.n_adapters,
             len(samples), len(docs))
    history = train(lm.model, lm.tokenizer, layers, routing, samples, config.training, checkpoint_dir,
                    progress=progress)
    routing.materialise()
    manifest = _manifest(lm, fingerprint, config, len(docs), len(samples), history,
                         time.perf_counter() - start + resumed_seconds(history))
    return Encoded(layers, routing, augs, manifest)


def resumed_seconds(history: list[dict]) -> float:
    """The seconds an earlier process spent on the epochs a checkpoint brought back (train marks them) and on the
    part of an epoch it had done ("seconds_before")."""
    return sum(h.get("seconds", 0.0) if h.get("resumed") else h.get("seconds_before", 0.0) for h in history)


def encode_staged(docs: list[Document], lm: LoadedModel, config: BuildConfig, cache: Path | None = None,
                  checkpoint_dir: Path | None = None, progress: bool = True, reuse: list[Augmentation] = ()) -> Encoded:
    """`stages` 2: half the inventory trained on every other document (`encode`), then the other half grown and
    trained with the other documents' rows on their samples (`extend`, as `add --grow` does): the first stage's
    adapters and rows come out as that stage left them and never weigh the grown adapters. One build of
    `config`'s size; rows in the documents' order. The second stage keeps no epoch checkpoints."""
    start, m = time.perf_counter(), config.inventory.n_adapters
    base = replace(config, stages=1, inventory=replace(config.inventory, n_adapters=max(1, m // 2)))
    first, rest = docs[0::2], docs[1::2]
    e = encode(first, lm, base, cache, checkpoint_dir, progress, reuse)
    start = time.perf_counter() - e.manifest.build_seconds  # the first stage's time, resumed epochs included
    log.info("stage 2: %d adapters grown for %d more documents", m - base.inventory.n_adapters, len(rest))
    augs, record = extend(lm, e.layers, e.routing, config, rest, cache=cache, progress=progress,
                          grow=m - base.inventory.n_adapters, reuse=reuse)
    order = sorted(range(len(docs)), key=lambda i: (i % 2, i // 2))  # the document at each row of the table
    e.routing.keep(torch.tensor(sorted(range(len(docs)), key=order.__getitem__)))  # row i: document i's
    by_id = {a.doc_id: a for a in [*e.augmentations, *augs]}
    first_m = e.manifest
    history = [{**h, "stage": 1} for h in first_m.diagnostics] + [{**h, "stage": 2} for h in record["diagnostics"]]
    manifest = replace(_manifest(lm, first_m.base_model.fingerprint, config, len(docs),
                                 first_m.n_samples + record["n_samples"], history, time.perf_counter() - start),
                       created=first_m.created)
    return Encoded(e.layers, e.routing, [by_id[d.id] for d in docs], manifest)


def _check_targets(lm: LoadedModel, inventory: InventoryConfig) -> None:
    try:
        target_modules(lm.model, inventory.targets, inventory.top_layers)
    except ValueError as e:
        raise InputError(f"{e}; fix --targets / --top-layers.") from None


def extend(lm: LoadedModel, layers: list[PolyLoRALinear], routing: RoutingTable, build: BuildConfig,
           docs: list[Document], training: TrainConfig | None = None, cache: Path | None = None,
           checkpoint_dir: Path | None = None, progress: bool = True, no_train: bool = False, grow: int = 0,
           context_qa: int | None = None, reuse: list[Augmentation] = ()) -> tuple[list[Augmentation], dict]:
    """Append routing rows for `docs` (and `grow` adapters) and train only those: the old rows and adapters
    come out exactly as they went in. Returns the new documents' augmentations and the training record
    (samples, epochs, loss and diagnostics) for the manifest's additions."""
    augs = _augment(docs, build, lm, cache, progress, reuse)
    n_old, m_old = routing.n_docs, layers[0].config.n_adapters
    samples = [replace(s, doc=s.doc + n_old) for s in build_samples(docs, augs, build, context_qa)]
    torch.manual_seed(build.training.seed + n_old)  # the grown adapters' and new rows' init: part of the seeded run
    if grow:
        grow_inventory(layers, grow)
        routing.grow_adapters(grow)
    routing.grow(len(docs))
    _init_new_rows(lm, routing, build, docs, n_old, m_old, grow)
    config = replace(training or build.training, train_adapters=bool(grow))
    if no_train:
        config, history = replace(config, epochs=0), []
    else:
        # Copies (inventory_state gives views): the old adapters are restored exactly, whatever the optimiser did
        kept = {k: v.clone() for k, v in inventory_state(layers).items()}
        history = train(lm.model, lm.tokenizer, layers, routing, samples, config, checkpoint_dir,
                        trainable_docs=torch.arange(routing.n_docs) >= n_old, progress=progress,
                        frozen_adapters=m_old)
        _restore_adapters(layers, kept, m_old)
    record = {"n_samples": len(samples), "epochs": config.epochs,
              **({"lr_adapters": config.lr_adapters} if grow and not no_train else {}),
              "loss_per_epoch": [e["loss"] for e in history], "diagnostics": history,
              "train_tokens_per_doc": round(sum(e["tokens"] for e in history) / len(docs))}
    return augs, record


def growth_for(n_new: int, manifest: Manifest) -> int:
    """`--grow auto`: as many adapters as keep the knowledge base's documents per adapter (at least 1)."""
    return max(1, round(n_new * manifest.inventory.n_adapters / max(manifest.n_docs, 1)))


def _init_new_rows(lm: LoadedModel, routing: RoutingTable, build: BuildConfig, docs: list[Document], n_old: int,
                   m_old: int, grow: int) -> None:
    """Where the new documents' rows start: on the grown adapters (k-means of the new documents into
    `grow` clusters), else where the router or the nearest cluster puts them, else near uniform."""
    content = grow or routing.router is not None or routing.centroids is not None
    x = embed_documents(lm, docs) if content else None  # no mixing: the base model
    if grow:
        assign, centroids = kmeans(x, grow, seed=build.training.seed)
        routing.init_from_clusters(assign + m_old, build.routing_strength, start=n_old)
        if routing.centroids is not None and len(routing.centroids) == m_old:
            routing.centroids = torch.cat([routing.centroids, centroids])  # centroid i = adapter i
    elif routing.router is not None:
        routing.init_from_router(x, start=n_old)
    elif routing.centroids is not None:
        routing.init_from_clusters(routing.nearest_cluster(x), build.routing_strength, start=n_old)


def _restore_adapters(layers: list[PolyLoRALinear], kept: dict[str, torch.Tensor], m_old: int) -> None:
    with torch.no_grad():
        for layer in layers:
            for k, p in layer.named_adapters().items():  # the grown ones (past m_old) keep their training
                p[old_part(k, m_old)] = kept[f"{layer.path}.{k}"][old_part(k, m_old)]


def _manifest(lm: LoadedModel, fingerprint: str, config: BuildConfig, n_docs: int, n_samples: int,
              history: list[dict], seconds: float) -> Manifest:
    now = store.now()
    return Manifest(base_model=BaseModel(lm.spec, lm.path, fingerprint), build=config, n_docs=n_docs, created=now,
                    n_samples=n_samples, loss_per_epoch=[e["loss"] for e in history], diagnostics=history,
                    train_tokens_per_doc=round(sum(e["tokens"] for e in history) / max(n_docs, 1)),  # the budget
                    build_seconds=round(seconds, 1), changes=[{"op": "build", "n_docs": n_docs, "at": now}])


def _embed(lm: LoadedModel, docs: list[Document]) -> torch.Tensor:
    """(N, d) the base model's document embeddings, for cluster init and the router."""
    log.info("embedding %d documents for content-based routing", len(docs))
    return embed_documents(lm, docs)


def _augment(docs: list[Document], config: BuildConfig, lm: LoadedModel, cache: Path | None, progress: bool,
             reuse: list[Augmentation]) -> list[Augmentation]:
    known = {a.doc_id: a for a in reuse}
    missing = [d for d in docs if d.id not in known]
    if missing:
        made = augment_documents(missing, config.augmenter, lm, cache=cache, progress=progress, max_qa=config.max_qa,
                                 url=config.augment_url, model_name=config.augment_model)
        known.update(zip((d.id for d in missing), made))
    return [known[d.id] for d in docs]
