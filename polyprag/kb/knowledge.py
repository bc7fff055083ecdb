"""The knowledge base: documents + adapter inventory + routing table + BM25 index, and what changes them.

Training is `encode` (`build`, `add` and `retrain` call it); storing is `store` (one folder, versions,
checksums); reading is `answer` here (the poly modes) and `readers` (every mode).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import torch

from . import encode, storage, store
from ..lm.adapters import PolyLoRALinear, eject, inject, inventory_state, load_inventory_state, reinstate
from ..lm.answer import Answer, answer_questions
from ..text.augment import Augmentation
from ..text.corpus import Document, check_lengths
from .encode import growth_for
from ..errors import InputError
from ..lm.generate import GenerationConfig, Routing
from .manifest import COMBINES, FORMAT_VERSION, BuildConfig, Manifest  # noqa: F401 (re-exported)
from ..lm.models import BUNDLED, DEFAULT_DTYPE, LoadedModel, load_model
from ..modes import KB_DEFAULT, KB_MODES, MODES
from ..text.retrieve import TOP_K, BM25Index, Hit, passages
from ..method import arrow
from ..method.routing import RoutingTable
from .lifecycle import KEEP_VERSIONS
from .store import Stored
from ..method.config import TrainConfig

log = logging.getLogger("polyprag")

class KnowledgeBase:
    def __init__(self, lm: LoadedModel, layers: list[PolyLoRALinear], routing: RoutingTable, docs: list[Document],
                 index: BM25Index, manifest: Manifest, augmentations: list[Augmentation]):
        self.lm, self.layers, self.routing, self.docs = lm, layers, routing, docs
        self.index, self.manifest, self.augmentations = index, manifest, augmentations
        self.row = {d.id: i for i, d in enumerate(docs)}
        # (folder, version) this KB was loaded from or last saved to: a save there must start from that version
        self.origin: tuple[Path, int] | None = None
        # The LLM server the operator named for augmenting this KB's new documents ("" : none named). A manifest
        # may name any server (a KB received from elsewhere): its URL is used only once the operator names it too.
        self.trusted_augment_url = ""

    def trust_augment_url(self, url: str) -> None:
        """The operator names the augmentation server (`--augment-url`): if it is the one the manifest records,
        additions and retraining may send it the new documents (and $POLYPRAG_AUGMENT_KEY)."""
        self.trusted_augment_url = url

    def _check_augment_url(self) -> None:
        url = self.manifest.build.augment_url
        if url and url != self.trusted_augment_url:
            raise InputError(f"this knowledge base's manifest names an augmentation server, {url!r}: new documents "
                             "(and $POLYPRAG_AUGMENT_KEY) would be sent there. A manifest can name any server, so it "
                             f"is used only when you name it too: pass --augment-url {url} (add, compact, serve), or "
                             "rebuild the KB with another augmenter.")

    @classmethod
    def build(cls, docs: list[Document], lm: LoadedModel, config: BuildConfig = BuildConfig(),
              cache: Path | None = None, checkpoint_dir: Path | None = None, progress: bool = True,
              reuse: list[Augmentation] = ()) -> KnowledgeBase:
        """Encode `docs` into a fresh inventory and routing (`encode.encode`) injected into lm.model.
        `reuse`: augmentations already made (a KB's own, when it is retrained), matched by document id."""
        if not docs:
            raise InputError("no documents to encode; pass a corpus with at least one document.")
        check_lengths(docs)
        if config.stages == 2 and len(docs) > 1:
            e = encode.encode_staged(docs, lm, config, cache, checkpoint_dir, progress, reuse)
        else:
            e = encode.encode(docs, lm, config, cache, checkpoint_dir, progress, reuse)
        kb = cls(lm, e.layers, e.routing, docs, BM25Index.build(docs), e.manifest, e.augmentations)
        kb.trusted_augment_url = config.augment_url  # named by whoever built it, here
        kb._settle()
        return kb

    def add(self, docs: list[Document], training: TrainConfig | None = None, cache: Path | None = None,
            checkpoint_dir: Path | None = None, progress: bool = True, no_train: bool = False,
            grow: int = 0, context_qa: int | None = None) -> float:
        """Poly-z: new documents get routing rows trained on their own samples; the inventory and every old
        row stay frozen, so old documents' answers do not change. `no_train`: the rows are the router's
        (or the nearest cluster's) for the documents' embeddings, one forward pass, no training. `grow`: n
        fresh adapters are appended to the inventory and trained, with the new rows, on the new documents'
        samples; old rows give them weight exactly 0 (`routing.MASKED`), so old answers stay bit-for-bit
        the same. `context_qa`: passage samples per new document (default: the build's); fewer make the
        addition faster, as a passage sample is several QA samples long. Returns the seconds it took."""
        self._check_new(docs)
        if not docs:
            raise InputError("no documents to add; pass a corpus with at least one document.")
        self._check_augment_url()
        if no_train and (grow or (self.routing.router is None and self.routing.centroids is None)):
            raise InputError("adding without training needs content-based routing (a KB built with --routing-init "
                             "cluster, better also --router embedding) and no --grow; drop --no-train, or rebuild.")
        if grow < 0:
            raise InputError(f"grow={grow}: give the number of adapters to add (0 for none).")
        start = time.perf_counter()
        m, m_old, bytes_before = self.manifest, self.layers[0].config.n_adapters, self._tensor_bytes()
        augs, record = encode.extend(self.lm, self.layers, self.routing, m.build, docs, training, cache,
                                     checkpoint_dir, progress, no_train, grow, context_qa)
        self._settle()  # the new rows and adapters; the old ones are already at stored precision
        self._set_docs(self.docs + docs, self.augmentations + augs)
        seconds = time.perf_counter() - start + encode.resumed_seconds(record["diagnostics"])
        addition = {"n_docs": len(docs), **record, "adapters_grown": grow, "n_adapters": m_old + grow,
                    **({"context_qa": context_qa} if context_qa is not None else {}),
                    "tensor_bytes_added": self._tensor_bytes() - bytes_before,
                    "seconds": round(seconds, 1), "at": store.now()}
        self.manifest = replace(m.with_adapters(m_old + grow), n_docs=len(self.docs), additions=[*m.additions, addition])
        self._record({"op": "add", "ids": [d.id for d in docs], "n_docs": len(docs), "seconds": addition["seconds"],
                      **({"adapters_grown": grow} if grow else {})})
        return seconds

    def _tensor_bytes(self) -> int:
        """Bytes of the inventory and routing tensors as stored (the KB's learned state)."""
        inventory, routing = self._stored()
        return sum(t.nbytes for t in [*inventory.values(), *routing.values()])

    def _precision(self) -> str:
        return self.manifest.build.storage

    def _stored(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The inventory and routing tensors as the KB's files hold them."""
        precision = self._precision()
        routing = self.routing.tensors()
        routing["logits"] = routing["logits"].to(storage.routing_dtype(precision))
        return storage.pack(inventory_state(self.layers), precision), routing

    @torch.no_grad()
    def _settle(self) -> None:
        """Round the fp32 masters to the stored precision: the KB answers as it will after a save and a load."""
        precision = self._precision()
        for layer in self.layers:
            for p in layer.named_adapters().values():
                p.copy_(storage.rounded(p, precision))
        self.routing.logits.copy_(self.routing.logits.to(storage.routing_dtype(precision)))

    def remove(self, ids: list[str]) -> None:
        """Drop documents: their routing rows, texts, augmentations and index entries. The inventory stays as it
        is, so every other document's answers do not change. To replace a document: remove it, then add it."""
        ids = list(dict.fromkeys(ids))
        unknown = [i for i in ids if i not in self.row]
        if unknown:
            raise InputError(f"document id(s) {unknown[:5]}{' …' if len(unknown) > 5 else ''} are not in the "
                             "knowledge base; use ids from its docs.jsonl (`polyprag inspect KB` shows some).")
        if not ids:
            raise InputError("no document ids to remove; name at least one.")
        if len(ids) == len(self.docs):
            raise InputError(f"removing all {len(ids)} documents would leave an empty knowledge base; keep at "
                             "least one, or build a new knowledge base instead.")
        gone = set(ids)
        keep = torch.tensor([d.id not in gone for d in self.docs])  # (N,)
        self.routing.keep(keep)
        self._set_docs([d for d in self.docs if d.id not in gone],
                       [a for a in self.augmentations if a.doc_id not in gone])
        self.manifest = replace(self.manifest, n_docs=len(self.docs))
        self._record({"op": "remove", "ids": ids, "n_docs": len(ids)})

    def retrain(self, docs: list[Document] = (), training: TrainConfig | None = None, cache: Path | None = None,
                checkpoint_dir: Path | None = None, progress: bool = True, n_adapters: int | None = None) -> float:
        """Encode every document, the KB's and `docs`, into a fresh inventory and routing with the build config
        the manifest records (`training` replaces its training part), into `n_adapters` adapters (default:
        as many as the build had, before any growth: this compacts a grown inventory). Unlike `add`, every
        answer may change. The KB's own augmentations are reused. Returns the seconds it took."""
        docs = list(docs)
        self._check_new(docs)
        self._check_augment_url()
        config = self.manifest.build
        inventory = replace(config.inventory, n_adapters=n_adapters or self.manifest.built_adapters())
        config = replace(config, inventory=inventory,
                         training=replace(training or config.training, train_adapters=True))
        start = time.perf_counter()
        taken = eject(self.lm.model)  # `build` injects a fresh inventory into the bare base model
        try:
            fresh = KnowledgeBase.build(self.docs + docs, self.lm, config, cache, checkpoint_dir, progress,
                                        reuse=self.augmentations)
        except BaseException:
            reinstate(taken)  # a failed retrain leaves this KB as it was
            raise
        seconds = time.perf_counter() - start + encode.resumed_seconds(fresh.manifest.diagnostics)
        m = self.manifest
        origin = self.origin
        vars(self).update(vars(fresh))
        self.origin = origin  # still the version it was read as: a save must not drop what others saved since
        # The new inventory has no Poly-z rows: "additions" (their training log) starts over.
        self.manifest = replace(fresh.manifest, created=m.created, version=m.version, changes=m.changes)
        self._record({"op": "retrain", "ids": [d.id for d in docs], "n_docs": len(self.docs),
                      "seconds": round(seconds, 1)})
        return seconds

    def _set_docs(self, docs: list[Document], augs: list[Augmentation]) -> None:
        """New document list (rows already matching the routing table): id → row map and BM25 index follow."""
        self.docs, self.augmentations = docs, augs
        self.row = {d.id: i for i, d in enumerate(docs)}
        self.index = BM25Index.build(docs)

    def _check_new(self, docs: list[Document]) -> None:
        check_lengths(docs)
        clash = sorted({d.id for d in docs} & set(self.row))
        if clash:
            raise InputError(f"document id(s) {clash[:5]} are already in the knowledge base; remove them first "
                             "(`polyprag remove KB ID`), or give the new documents other ids.")

    def _record(self, change: dict) -> None:
        """Log a change in the manifest; `save` stamps it with the version it goes into."""
        self.manifest = replace(self.manifest, changes=[*self.manifest.changes, {**change, "at": store.now()}])

    def save(self, folder: str | Path, keep_versions: int = KEEP_VERSIONS) -> int | None:
        """Write atomically (`store.write`): over an existing KB this is a new version, and into the folder it
        was loaded from only on top of the version it was loaded as (else ConflictError, nothing written); the
        history keeps the newest `keep_versions`. Returns the version it replaced, None if the folder held no KB."""
        inventory, routing = self._stored()
        self.manifest, replaced = store.write(Path(folder), Stored(self.manifest, inventory, routing, self.docs,
                                                                   self.augmentations, self.index), self.origin,
                                              keep_versions)
        self.origin = (Path(folder).resolve(), self.manifest.version)
        return replaced

    @classmethod
    def load(cls, folder: str | Path, lm: LoadedModel | str | None = None, device: str = "cpu",
             dtype: str = DEFAULT_DTYPE) -> KnowledgeBase:
        """`lm`: a loaded model, a model spec, or None for the KB's own base model (loaded after the KB's
        files are checked, so a damaged KB fails fast, on `device` in `dtype`)."""
        folder = Path(folder)
        stored = store.read(folder)
        if not isinstance(lm, LoadedModel):
            lm = load_model(lm or _own_model(folder, stored.manifest.base_model.spec), device, dtype)
        store.check_base_model(folder, stored.manifest, lm)
        layers = inject(lm.model, stored.manifest.inventory)
        try:
            load_inventory_state(layers, storage.unpack(stored.inventory))
        except (ValueError, RuntimeError) as e:  # names or shapes that do not fit the manifest's model
            raise InputError(f"{folder}/inventory.safetensors does not fit the manifest's model ({e}); "
                             f"{store.fix(folder)}.") from None
        routing = RoutingTable.from_tensors(stored.routing)  # memory-mapped: rows are read when questions use them
        kb = cls(lm, layers, routing, stored.docs, stored.index, stored.manifest, stored.augmentations)
        kb.origin = (folder.resolve(), stored.manifest.version)
        return kb

    def with_arrow_routing(self) -> KnowledgeBase:
        """This KB answering with Arrow's routing rows (method.arrow: from the adapters' weights and each
        document's tokens, nothing trained) instead of its learned ones; the inventory shared (bench's poly-arrow)."""
        scores = arrow.document_scores(self.lm, self.layers, self.docs)  # (N, L, M)
        logits = arrow.arrow_logits(scores, self.routing.logits.shape[1], self.layers[0].config.heads)
        table = RoutingTable.from_tensors({"logits": logits})
        return KnowledgeBase(self.lm, self.layers, table, self.docs, self.index, self.manifest, self.augmentations)

    def retrieve(self, questions: list[str], k: int) -> list[list[Hit]]:
        return self.index.search(questions, k=k)

    def weights(self, hits: list[list[Hit]], mode: str) -> torch.Tensor:
        """(Q, G, M): the mean of the retrieved documents' weights, or uniform (no hit ⇒ uniform too)."""
        rows = []
        for hs in hits:
            if MODES[mode].uniform or not hs:
                rows.append(self.routing.uniform())
            else:
                rows.append(self.routing.mean_weights(torch.tensor([self.row[h.doc_id] for h in hs])))
        return torch.stack(rows)

    def summed_weights(self, hits: list[list[Hit]]) -> torch.Tensor:
        """(Q, G, K, M): each retrieved document's inference weights, its adapters to be summed; rows with fewer
        than K hits are padded with zero weights (no adapter), a question without hits gets uniform weights."""
        k = max(1, max((len(hs) for hs in hits), default=1))
        g, m = self.routing.logits.shape[1:]
        out = torch.zeros(len(hits), k, g, m)
        for q, hs in enumerate(hits):
            if not hs:
                out[q, 0] = self.routing.uniform()
            else:
                out[q, :len(hs)] = self.routing.inference_weights(torch.tensor([self.row[h.doc_id] for h in hs])).detach()
        return out.transpose(1, 2)  # (Q, G, K, M)

    def mixing_weights(self, hits: list[list[Hit]], mode: str = KB_DEFAULT, combine: str | None = None) -> torch.Tensor:
        """What each question's answer mixes: (Q, G, M) means of weights, or (Q, G, K, M) with combine "sum"
        (`combine` overrides the KB's own setting)."""
        combine = combine or self.manifest.build.combine
        w = self.summed_weights(hits) if combine == "sum" and not MODES[mode].uniform else self.weights(hits, mode)
        return w * self.manifest.build.combine_strength if MODES[mode].strength else w

    def answer(self, questions: list[str], mode: str = KB_DEFAULT, k: int = TOP_K,
               generation: GenerationConfig = GenerationConfig(), progress: bool = True,
               timings: list[float] | None = None, hits: list[list[Hit]] | None = None,
               combine: str | None = None, routing_hits: list[list[Hit]] | None = None) -> list[Answer]:
        """`combine` (COMBINES) overrides the KB's own setting; `routing_hits`: the documents whose routing rows
        mix, if not the `hits` whose passages the prompt reads (bench's poly-shuffled-combine control)."""
        if mode not in KB_MODES:
            raise InputError(f"mode {mode!r} is not a knowledge-base mode; choose from {list(KB_MODES)}.")
        hits = hits if hits is not None else self.retrieve(questions, k)
        ps = passages(hits, {d.id: d for d in self.docs}) if MODES[mode].passages else None
        routing = Routing(self.layers, self.mixing_weights(hits if routing_hits is None else routing_hits, mode, combine))
        return answer_questions(self.lm, questions, ps, generation, progress=progress, timings=timings,
                                routing=routing)

    def storage_bytes(self, folder: str | Path) -> dict[str, int]:
        return {**store.sizes(Path(folder)),
                "routing_per_doc": self.routing.logits[0].numel() * storage.routing_dtype(self._precision()).itemsize}


def _own_model(folder: Path, spec: str) -> str:
    """The model a manifest names, if it is bundled or a local folder: a hub id is downloaded only when the
    operator names it (a KB received from elsewhere could name any model)."""
    if spec in BUNDLED or Path(spec).expanduser().is_dir():
        return spec
    raise InputError(f"{folder} names its base model {spec!r}, which is neither bundled nor a local folder; polyprag "
                     f"does not fetch a model on a manifest's word. If you trust it, pass --model {spec} (or load "
                     "it with KnowledgeBase.load(folder, spec)).")


def rebase(kb: KnowledgeBase, folder: Path, cache: Path | None = None, progress: bool = True) -> None:
    """Carry over onto `kb` what changed in `folder` since `kb` was read from it (another writer's additions
    and removals), so that `kb` saves on top of the folder's current version: documents removed there are
    removed here, documents added there are added here (with growth, as new knowledge)."""
    folder = Path(folder)
    version, docs = store.read_documents(folder)  # the documents and version number of one version
    ids = {d.id for d in docs}
    changed = {d.id for d in docs if d.id in kb.row and kb.docs[kb.row[d.id]] != d}  # replaced: remove + add
    removed = [d.id for d in kb.docs if d.id not in ids or d.id in changed]
    added = [d for d in docs if d.id not in kb.row or d.id in changed]
    if removed:
        kb.remove(removed)
    if added:
        kb.add(added, cache=cache, progress=progress, grow=growth_for(len(added), kb.manifest))
    kb.origin = (folder.resolve(), version)
    log.info("rebased onto %s version %d: %d removed, %d added", folder, version, len(removed), len(added))
