"""What a knowledge base records about itself: the build's config and `manifest.json`, as typed values.

`Manifest.from_json` checks a manifest once, when a KB is read: every later use is an attribute, not a
dict lookup with a default. The file keeps its flat JSON layout (the build config's keys at the top level),
so KBs written before this module read unchanged; settings a KB predates take the value builds had then
(`LEGACY`), not today's default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from . import storage
from ..lm.adapters import InventoryConfig
from ..text.augment import AUGMENTERS
from ..errors import InputError
from ..method.routing import ROUTERS, ROUTING_INITS
from ..settings import check, setting
from ..method.config import TrainConfig

# 2: the manifest lists the sha256 of every file ("files"); 3: tensors stored in bf16/fp16/int8 ("storage"),
# inventory keyed by module path
FORMAT_VERSION = 3


# How the k retrieved documents' routing makes one question's adapter: "mean" of their weights (one mixture),
# or "sum" of their mixtures' adapters (PRAG's way with its per-document LoRAs).
COMBINES = ("mean", "sum")


@dataclass(frozen=True)
class BuildConfig:
    inventory: InventoryConfig = field(default_factory=InventoryConfig)
    routing: str = setting("fine", "fine: one routing vector per target layer; coarse: one per document",
                           choices=("fine", "coarse"))
    # routing_init, contrast and combine_strength were first measured on test questions (docs/experiments.md); each
    # `chosen` note below says where its default was re-chosen on dev
    routing_init: str = setting("cluster", "cluster (from k-means over the base model's document embeddings) or "
                                           "uniform (Z ≈ 0)", choices=ROUTING_INITS,
                                chosen="dev: uniform held back by the rule of benchmarks/levers_dev.sh (BENCHMARKS.md, "
                                       "\"Levers on dev\": bf16+uniform-init 32.5 vs bf16 38.3); first chosen on test")
    routing_strength: float = setting(3.0, "cluster init: logit +s on the document's cluster, -s on the others",
                                      at_least=0)
    router: str = setting("table", "table (a free routing row per document) or embedding (rows computed from the "
                                   "document's embedding by a router trained with the adapters; needs --routing-init "
                                   "cluster; an added document is routed without training)", choices=ROUTERS)
    augmenter: str = setting("rules", "rules (no LLM) or llm (the --model, or --augment-url)", choices=AUGMENTERS)
    augment_url: str = setting("", "llm augmenter: an OpenAI-compatible server (vLLM, TGI, llama.cpp, polyprag "
                                   "serve) writes the text instead of --model; its key in $POLYPRAG_AUGMENT_KEY")
    augment_model: str = setting("", "the model name sent to --augment-url")
    # The samples below (6 QA pairs as bare questions, the first also with its passage in context, no rewrite) with
    # 2 epochs at lr 2e-3 (TrainConfig): the set benchmarks/levers_dev.sh's forward confirmation keeps on dev. Until
    # 2026-12-05 it was 3 bare pairs and no passage: the recipe of every real-data run in docs/experiments.md
    max_qa: int = setting(6, "rules augmenter: QA pairs per document at most", at_least=1,
                          chosen="dev: 6 confirmed on top of bf16+context1 by the rule of benchmarks/levers_dev.sh "
                                 "(BENCHMARKS.md, \"The confirmation\": score 42.4 vs 39.3); first 3, chosen on test")
    context_qa: int = setting(1, "QA pairs also trained with the passage in context (PRAG: 2)", at_least=0,
                              chosen="dev: 1 confirmed on top of bf16 by the rule of benchmarks/levers_dev.sh "
                                     "(BENCHMARKS.md, \"The confirmation\"); first 0, chosen on test")
    rewrite: bool = setting(False, "also train the --context-qa pairs with the document's rewrite in context "
                                   "(PRAG's protocol)", chosen="dev: on held back by the rule of benchmarks/levers_dev.sh on top of "
                                                           "bf16+context1 (BENCHMARKS.md, \"Levers on dev\"); first chosen on test")
    contrast: int = setting(3, "yes/no and either-or questions per document made from its QA pairs", at_least=0,
                            chosen="dev: 0 held back by the rule of benchmarks/levers_dev.sh (BENCHMARKS.md, "
                                   "\"Levers on dev\"); first chosen on test")
    paraphrases: int = setting(1, "other phrasings of each QA pair also trained (a cloze of its sentence, then the "
                                  "sentence's start to complete): its fact asked as users may ask it", at_least=0,
                               at_most=2, chosen="dev: 1 confirmed on top of bf16+context1+qa6 by the rule of "
                                                 "benchmarks/levers_dev.sh (score 43.7 vs 42.4; BENCHMARKS.md, \"The "
                                                 "forward resumes\"); cost 1.24x (benchmarks/lever_cost.sh); first 0")
    title_qa: int = setting(0, "questions per document whose answer is its own name (a sentence naming it, the name "
                               "blanked): the reverse direction of its facts, which two-hop questions ask", at_least=0,
                            at_most=3, chosen="dev: 1 not confirmed on top of bf16+context1+qa6 by the rule of "
                                              "benchmarks/levers_dev.sh (own - shuffled fell on the briefs; BENCHMARKS.md, "
                                              "\"The forward resumes\"); first every build's behaviour")
    format_routing: str = setting("own", "how the --contrast questions (answer format) train: own (the document's "
                                         "routing, as its facts) or uniform (every adapter alike: format apart from "
                                         "facts)", choices=("own", "uniform"),
                                 chosen="dev: uniform not confirmed on top of bf16+context1+qa6 by the rule of "
                                        "benchmarks/levers_dev.sh (own - shuffled fell on HotpotQA dev; BENCHMARKS.md, "
                                        "\"The forward resumes\"); first every build's behaviour")
    # Staged (issue 32's schedule): a base inventory first, then adapters only the later documents train, as an
    # `add --grow` would make them, within one build of the same size
    stages: int = setting(1, "1: every document and adapter trained together; 2: half the adapters trained on every "
                             "other document, then the other half grown for the rest, with their rows (the first "
                             "half's rows never weigh them)", choices=(1, 2),
                          chosen="every build's behaviour before the setting existed; the lever is measured on dev "
                                 "(benchmarks/levers_dev.sh staged)")
    combine: str = setting("mean", "answering: mean of the retrieved documents' weights, or sum of their adapters",
                           choices=COMBINES)
    # (1: as poly mixes; measured in docs/experiments.md, "Adapter strength beside passages")
    combine_strength: float = setting(0.5, "poly-combine: scale the mixing weights (< 1: the passages weigh more)",
                                      above=0, at_most=4,
                                      chosen="dev: benchmarks/strength_dev.sh (briefs 3 seeds, HotpotQA n = 100 x 3 "
                                             "seeds; mean 51.8 against 46.7 at 0.75, BENCHMARKS.md); first 0.75 on test")
    storage: str = setting(storage.DEFAULT, "the inventory's stored precision (routing in fp16 unless fp32; bf16: "
                                            "half the bytes of fp32 at the same F1)", choices=storage.PRECISIONS)
    training: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self):
        check(self)
        if self.augment_url and (self.augmenter != "llm" or not self.augment_url.startswith(("http://", "https://"))):
            raise InputError(f"augment_url={self.augment_url!r}: an http(s) URL, with the llm augmenter "
                             "(--augmenter llm --augment-url http://host:8000).")
        if self.stages == 2 and self.inventory.n_adapters < 2:
            raise InputError(f"stages=2 (--stages) grows half of the inventory for the later documents, and "
                             f"{self.inventory.n_adapters} adapter has no half; use --adapters 2 or more, or --stages 1.")
        if self.router == "embedding" and self.routing_init != "cluster":
            raise InputError("router='embedding' is fitted to the cluster table before training; pass "
                             "--routing-init cluster with --router embedding.")


# Build settings newer than some KBs, with the value every build had before the setting existed.
LEGACY = {"routing_init": "uniform", "routing_strength": 3.0, "router": "table", "combine": "mean",
          "combine_strength": 1.0, "storage": storage.LEGACY, "contrast": 0, "format_routing": "own", "max_qa": 8, "context_qa": 2,
          "rewrite": True, "stages": 1, "paraphrases": 0, "title_qa": 0}
_BUILD_KEYS = tuple(f.name for f in fields(BuildConfig))


@dataclass(frozen=True)
class BaseModel:
    spec: str  # as given to --model
    path: str  # where its weights were read from
    fingerprint: str  # store.model_fingerprint: a KB loads only onto the model it was built for


@dataclass(frozen=True)
class Manifest:
    base_model: BaseModel
    build: BuildConfig  # build.inventory.n_adapters counts the adapters grown since (additions)
    n_docs: int
    created: str
    version: int = 1
    updated: str = ""
    n_samples: int = 0
    build_seconds: float = 0.0
    train_tokens_per_doc: int | None = None  # the training budget: tokens seen per document
    loss_per_epoch: list[float] = field(default_factory=list)
    diagnostics: list[dict] = field(default_factory=list)  # per epoch: loss, routing entropy, gradient norms...
    changes: list[dict] = field(default_factory=list)  # what made each version: build, add, remove, retrain
    additions: list[dict] = field(default_factory=list)  # each add since the last build: its training log
    files: dict[str, str] | None = None  # sha256 by file, as saved (None before a save, or format 1)
    format_version: int = FORMAT_VERSION

    @property
    def inventory(self) -> InventoryConfig:
        return self.build.inventory

    def built_adapters(self) -> int:
        """The inventory size before any growth since the last build or retrain."""
        return self.inventory.n_adapters - sum(a.get("adapters_grown", 0) for a in self.additions)

    def with_adapters(self, n: int) -> Manifest:
        return replace(self, build=replace(self.build, inventory=replace(self.inventory, n_adapters=n)))

    def to_json(self) -> dict:
        out = {"format_version": self.format_version, "created": self.created, "base_model": asdict(self.base_model)}
        for name in _BUILD_KEYS:
            value = getattr(self.build, name)
            out[name] = asdict(value) if name in ("inventory", "training") else value
        out["inventory"]["targets"] = list(self.inventory.targets)
        out.update({k: getattr(self, k) for k in ("n_docs", "n_samples", "loss_per_epoch", "diagnostics",
                                                  "train_tokens_per_doc", "build_seconds", "version", "changes")})
        out.update({k: getattr(self, k) for k in ("updated", "additions", "files") if getattr(self, k)})
        return out

    @classmethod
    def from_json(cls, m: dict, source: str | Path) -> Manifest:
        """`m` as read from `source` (named in errors); settings it predates take their LEGACY values."""
        fix = "roll back to an intact version (`polyprag versions KB`) or rebuild the knowledge base"
        missing = [k for k in ("base_model", "inventory", "routing", "augmenter", "training", "n_docs", "created")
                   if k not in m]
        if missing:
            raise InputError(f"{source} lacks {missing}, which every polyprag manifest has; {fix}.")
        try:
            inventory = InventoryConfig(**{**m["inventory"], "targets": tuple(m["inventory"]["targets"])})
            settings = {k: m.get(k, LEGACY.get(k)) for k in _BUILD_KEYS if k not in ("inventory", "training")}
            build = BuildConfig(inventory=inventory, training=TrainConfig(**m["training"]),
                                **{k: v for k, v in settings.items() if v is not None})
            base = BaseModel(**{k: m["base_model"][k] for k in ("spec", "path", "fingerprint")})
            return cls(base_model=base, build=build, **{k: m[k] for k in _RECORD_KEYS if k in m})
        except (TypeError, ValueError, KeyError) as e:  # an unknown or missing field, a value out of range
            raise InputError(f"{source} does not describe a knowledge base this polyprag reads ({e}); {fix}.") from None


_RECORD_KEYS = ("n_docs", "created", "version", "updated", "n_samples", "build_seconds", "train_tokens_per_doc",
                "loss_per_epoch", "diagnostics", "changes", "additions", "files", "format_version")
