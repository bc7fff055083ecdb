"""`polyprag bench`: the PRAG family side by side on one dataset — quality, storage and time in one table.

Every method answers the same questions from the same retrieved documents, with the same reader, prompt
and greedy decoding. Corpus modes: "closed" encodes every paragraph of the selected questions (BM25 over
them all); "per-question" (PRAG's) encodes only the paragraphs some question retrieved (its top-k).
Storage counts the parametric knowledge a method keeps on top of the corpus text and its BM25 index.

OUT/ holds one run: config.json; methods/<method>.json for each finished method (a rerun skips them and may ask
for others: only the settings that change a method's result must match; the reports hold every finished row);
the knowledge bases and PRAG adapters trained so far (a rerun continues them); partial/: the answers of a PRAG
row still running, chunk by chunk, and its adapters' training tally (eval.partial: a rerun without the adapters,
on another machine, continues from them); and the reports:
results.json, results.md, f1.png, routing_pca.png, adapter_usage.png.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .. import atomic
from . import compare, reuse
from ..kb import lifecycle, plots
from ..lm.answer import Answer
from ..lm.generate import GenerationConfig
from .bench_report import ADDED, breakdown, markdown, routing_report, storage_claims
from ..text.augment import PRAG_QA, Sample, augment_documents, prag_samples
from ..text.corpus import Document
from ..text.datasets import Question
from ..errors import InputError
from ..settings import differences, with_defaults
from .evaluate import code_version, data_fingerprint, prediction, score_row
from .partial import Partial, answer_together
from .workload import Workload, workload
from ..kb.encode import build_samples
from ..kb.knowledge import BuildConfig, KnowledgeBase, growth_for
from ..modes import KB_DEFAULT, KB_MODES
from ..kb.manifest import LEGACY
from ..lm.models import DEFAULT_DTYPE, LoadedModel, load_model, machine, resolve_device, resolve_dtype
from ..baselines.dyprag import Dyprag, DypragConfig, Translator
from ..baselines.prag import PragAdapters, PragConfig
from ..readers import gold_hits, reader
from ..text.retrieve import TOP_K, Hit, shuffled_hits

log = logging.getLogger("polyprag")

METHODS = ("closed-book", "rag", "prag", "prag-combine", "prag-shared", "prag-shared-combine", "prag-tuned",
           "prag-tuned-combine", "poly", "poly-combine", "poly-uniform", "poly-shuffled", "poly-uniform-combine",
           "poly-shuffled-combine", "prag-shuffled",
           "poly-z", "poly-grow")
# prag: PRAG's published data recipe (augment.prag_samples); prag-shared: PRAG trained on exactly poly's samples.
# poly-shuffled / prag-shuffled: the controls: retrieval and passages unchanged, each retrieved document's routing
# row / LoRA replaced by that of a document (seeded draw) the question did not retrieve (shuffled_hits).
# poly-shuffled-combine / poly-uniform-combine: the same controls beside the passages (the retrieved ones, unchanged):
# does poly-combine's lead over rag come from the documents' own routing, or from any adapter's answer format?
SHUFFLED = ("poly-shuffled", "prag-shuffled", "poly-shuffled-combine")
# rag-gold: a reader upper bound (needs gold paragraphs). closed-book-bare: the reader asked the way the
# parametric methods ask (no example exchanges) with no adapter: what their adapters add or cost. rag-bare: the
# same with the passages, the -combine rows' prompt without adapters (rag carries the example exchanges, the
# -combine rows do not: a lead over rag alone could be the prompt's; a claim is made against the stronger reader).
# poly-notrain: poly-z's split, the added half routed from its embeddings (`add --no-train`; needs
# --routing-init cluster).
# dyprag, dyprag-combine: DyPRAG's translator, trained on PRAG adapters of `dyprag_train_n` other questions'
# paragraphs of the same dataset (datasets.held_out: on the test split, dev questions).
# dyprag-tuned(-combine): the same at a higher lr and more epochs (DyPRAG's lr 1e-5 was set for ~10k documents).
OPTIONAL = ("rag-gold", "closed-book-bare", "rag-bare", "poly-notrain", "poly-arrow", "dyprag", "dyprag-combine",
            "dyprag-tuned", "dyprag-tuned-combine")
READERS = ("closed-book", "closed-book-bare", "rag", "rag-bare", "rag-gold")  # the base model alone, nothing trained
BUILD_FREE = tuple(m for m in METHODS + OPTIONAL if m in READERS or m.startswith(("prag", "dyprag")) and "shared" not in m)
CORPUS_MODES = ("per-question", "closed")
# what `bench-speed` times one question at a time; the first is the base the others are divided by
SPEED_MODES = ("closed-book-bare", "closed-book", "rag", "poly", "prag")
# The differences every multi-seed report gives (when both methods ran): the claims and the controls.
COMPARISONS = (("poly", "poly-shuffled"), ("poly", "prag"), ("poly", "prag-shared"), ("poly", "closed-book-bare"),
               ("poly", "poly-uniform"), ("poly", "dyprag"), ("poly-combine", "rag"), ("poly-combine", "prag-combine"),
               ("prag", "prag-shuffled"), ("prag", "closed-book-bare"), ("prag-combine", "rag"), ("poly", "poly-arrow"),
               ("poly-combine", "prag-shared-combine"), ("poly", "dyprag-tuned"),
               ("poly-combine", "poly-shuffled-combine"), ("poly-combine", "poly-uniform-combine"),
               ("poly-combine", "rag-bare"), ("prag-combine", "rag-bare"), ("poly", "closed-book"),
               ("prag", "prag-shared"), ("prag-combine", "prag-shared-combine"))  # which PRAG is the stronger
# own − shuffled: the knowledge that is the document's own, per question type too
CONTROLS = (("poly", "poly-shuffled"), ("prag", "prag-shuffled"), ("poly-combine", "poly-shuffled-combine"))
ABLATIONS = ("adapters", "rank", "routing")
PLAN_KEYS = ("methods", "ablations")  # a rerun may run more or fewer methods in the same folder


@dataclass(frozen=True)
class BenchConfig:
    dataset: str
    n: int
    split: str = "test"  # datasets.SPLITS (test: headline questions, dev: where defaults are chosen) or a --questions stem
    methods: tuple[str, ...] = METHODS
    corpus_mode: str = "per-question"
    k: int = TOP_K
    build: BuildConfig = field(default_factory=BuildConfig)
    prag: PragConfig = field(default_factory=PragConfig)  # the paper's setting: lr 3e-4, 1 epoch
    prag_tuned: PragConfig = field(default_factory=lambda: PragConfig(lr=1e-3, epochs=2))
    dyprag: DypragConfig = field(default_factory=DypragConfig)  # DyPRAG's defaults (dyprag.py)
    dyprag_tuned: DypragConfig = field(default_factory=lambda: DypragConfig(lr=1e-3, epochs=2))
    dyprag_train_n: int = 100  # questions beyond the evaluated ones whose paragraphs train the translator
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    ablations: tuple[tuple[str, tuple], ...] = ()  # (("adapters", (1, 4, 8)), ("routing", ("coarse",)))
    add_epochs: int | None = None  # poly-z / poly-grow: epochs of the add (None: the build's)
    add_lr: float | None = None  # poly-grow: the new adapters' learning rate (None: the build's)
    add_context_qa: int | None = None  # poly-z / poly-grow: passage samples per added document (None: the build's)
    device: str = "cpu"  # every method's model: cpu, cuda, mps or auto (models.resolve_device)
    dtype: str = DEFAULT_DTYPE  # the base model's weights (adapters train in fp32 either way)

    def __post_init__(self):
        bad = [m for m in self.methods if m not in METHODS + OPTIONAL]
        if bad:
            raise InputError(f"unknown method(s) {bad}; choose from {list(METHODS + OPTIONAL)} or 'all'.")
        if self.corpus_mode not in CORPUS_MODES:
            raise InputError(f"--corpus-mode {self.corpus_mode!r}; choose from {list(CORPUS_MODES)}.")
        if self.k < 1 or self.n < 1:
            raise InputError(f"--k {self.k} and --n {self.n} must both be >= 1.")
        if "poly-notrain" in self.methods and self.build.routing_init != "cluster":
            raise InputError("poly-notrain routes the added documents from their embeddings: it needs "
                             "--routing-init cluster; add it, or drop poly-notrain.")
        if self.add_epochs is not None and self.add_epochs < 1:
            raise InputError(f"--add-epochs {self.add_epochs} must be >= 1 (or left out: the build's epochs).")
        if self.add_lr is not None and not self.add_lr > 0:
            raise InputError(f"--add-lr {self.add_lr} must be > 0 (or left out: the build's --lr-adapters).")
        if self.dyprag_train_n < 1:
            raise InputError(f"--dyprag-train-n {self.dyprag_train_n} must be >= 1.")
        if self.add_context_qa is not None and self.add_context_qa < 0:
            raise InputError(f"--add-context-qa {self.add_context_qa} must be >= 0 (or left out: the build's).")
        unknown = [name for name, _ in self.ablations if name not in ABLATIONS]
        if unknown:
            raise InputError(f"unknown ablation(s) {unknown}; choose from {list(ABLATIONS)}.")


def with_seed(config: BenchConfig, seed: int) -> BenchConfig:
    """The same benchmark with every trained method seeded by `seed`."""
    b = config.build
    return replace(config, build=replace(b, training=replace(b.training, seed=seed)),
                   prag=replace(config.prag, seed=seed), prag_tuned=replace(config.prag_tuned, seed=seed),
                   dyprag=replace(config.dyprag, seed=seed), dyprag_tuned=replace(config.dyprag_tuned, seed=seed))


def run_seeds(model: str, config: BenchConfig, seeds: list[int], out: str | Path, questions: list[Question],
              corpus: list[Document], notes: dict, held_out: tuple[list[Question], list[Document]] = ([], []),
              progress: bool = True, rows_from: str | Path | None = None) -> dict:
    """One Bench run per seed in OUT/seed-S (each resumable; reader rows computed once), then OUT/results.json
    and results.md: mean ± sd per method and the paired bootstrap comparisons (compare.py)."""
    out, results = Path(out), []
    for seed in seeds:
        bench = Bench(model, with_seed(config, seed), out / f"seed-{seed}", progress,
                      readers_from=out / f"seed-{seeds[0]}" if seed != seeds[0] else None,
                      rows_from=reuse.seed_folder(rows_from, seed))
        results.append(bench.run(questions, corpus, {**notes, "seed": seed}, held_out))
    return compare.write_summary(out, results, seeds, COMPARISONS, CONTROLS)


class Bench:
    def __init__(self, model: str, config: BenchConfig, out: str | Path, progress: bool = True,
                 readers_from: Path | None = None, rows_from: Path | None = None):
        """`readers_from`: another seed's run folder of the same questions, whose finished reader rows (nothing
        trained, greedy: the same every seed) are copied instead of recomputed; `rows_from`: an earlier run's
        folder of this seed whose rows that no build setting reaches are copied (reuse.py)."""
        dtype = resolve_dtype(config.dtype, resolve_device(config.device))  # not "auto": resumed elsewhere, rows must not mix dtypes
        self.model, self.config, self.out, self.progress = model, replace(config, dtype=dtype), Path(out), progress
        self.readers_from, self.rows_from = readers_from, rows_from
        self._lms: dict[str, LoadedModel] = {}
        self._prag_adapters: dict[tuple | str, PragAdapters] = {}  # "dyprag": the translator's training set
        self._kbs: dict[Path, KnowledgeBase] = {}
        self._translators: dict[DypragConfig, tuple[Dyprag, dict]] = {}
        self.held_out: tuple[list[Question], list[Document]] = ([], [])

    def run(self, questions: list[Question], corpus: list[Document], notes: dict | None = None,
            held_out: tuple[list[Question], list[Document]] = ([], [])) -> dict:
        """`held_out`: other questions of the dataset and their paragraphs, for DyPRAG's translator."""
        self.held_out = held_out
        if any(m.startswith("dyprag") for m in self.config.methods) and not held_out[0]:
            raise InputError("dyprag needs questions beyond the evaluated ones to train its translator: use "
                             "--dataset NAME with a file holding more than --n questions (--dyprag-train-n more).")
        self._check_config(data_fingerprint(questions, corpus), data_fingerprint(*held_out) if held_out[0] else None)
        if self.rows_from:  # its BUILD_FREE rows are this run's too, unless its settings differ beyond the build
            reuse.check_record(self.rows_from, self.out)
        work = workload(questions, corpus, self.config.corpus_mode, self.config.k)
        log.info("%d questions, %d documents to encode (%s corpus)", len(questions), len(work.docs),
                 self.config.corpus_mode)
        for name in self._plan():
            if self._done(name).exists():
                (self.out / "partial" / f"{name}.json").unlink(missing_ok=True)  # its answers are in the row
                continue
            rows = [s / "methods" / self._done(name).name for s, ok in ((self.rows_from, name in BUILD_FREE),
                    (self.readers_from, name in READERS)) if s is not None and ok]
            if found := [r for r in rows if r.exists()]:
                reuse.copy_row(found[0], self._done(name), record=found[0].parents[1] == self.rows_from)
                continue
            log.info("running %s", name)
            self._save_method(name, *self._method(name, work))
            (self.out / "partial" / f"{name}.json").unlink(missing_ok=True)  # its answers are in the row now
        return self.report(work, notes or {})

    # --- the run's folder -------------------------------------------------------------------------------
    def _check_config(self, data: str, held: str | None) -> None:
        """`data`, `held`: fingerprints of the questions and corpus and of DyPRAG's held-out set (None: unread)."""
        path = self.out / "config.json"
        current = json.loads(json.dumps({"model": self.model, **asdict(self.config)}))
        if path.exists():
            saved = json.loads(path.read_text(encoding="utf-8"))
            old_data, old_held = saved.pop("data", data), saved.pop("held_out", None)  # none kept before 2026-12-05
            if old_data != data or None not in (old_held, held) and old_held != held:
                raise InputError(f"{self.out} holds a benchmark run of other questions or documents (the data file, "
                                 "split or counterfactual rewrite changed since); pass a new --out folder.")
            held = held or old_held
            # Which methods run may change between reruns (each has its own file); how they run may not.
            # A setting newer than the saved run, at any depth, counts as its default there (e.g. device "cpu"), or
            # as runs' value before it existed (manifest.LEGACY; the dtype float32, stored resolved, never "auto").
            defaults = json.loads(json.dumps(asdict(BenchConfig(dataset=self.config.dataset, n=self.config.n))))
            saved = with_defaults(with_defaults(saved, {"build": LEGACY, "dtype": "float32"}), defaults)
            diff = [d for k in current if k not in PLAN_KEYS for d in differences(k, saved.get(k), current[k])]
            if diff:
                raise InputError(f"{self.out} holds a benchmark run with other settings ({'; '.join(diff)}); "
                                 "rerun with the run's settings to resume it (e.g. --storage fp32 for a run "
                                 "made before bf16 storage), or pass a new --out folder.")
            log.info("resuming %s: %d method(s) already done", self.out, len(list((self.out / "methods").glob("*.json"))))
        atomic.write_text(path, json.dumps({**current, "data": data, "held_out": held}, indent=1))

    def _done(self, name: str) -> Path:
        return self.out / "methods" / f"{name.replace('/', '_')}.json"

    def _save_method(self, name: str, row: dict, predictions: list[dict]) -> None:
        row = {**row, "code": code_version(), "machine": machine()}  # times differ by CPU: say which
        atomic.write_text(self._done(name), json.dumps({"row": row, "predictions": predictions}, ensure_ascii=False))

    def _plan(self) -> list[str]:
        ablation = [f"poly[{key}={value}]" for key, values in self.config.ablations for value in values]
        return [*self.config.methods, *ablation]

    def _lm(self, role: str) -> LoadedModel:
        """One fresh model per family: poly layers and PEFT's must not wrap the same modules."""
        if role not in self._lms:
            self._lms[role] = self._load()
        return self._lms[role]

    def _load(self) -> LoadedModel:
        return load_model(self.model, self.config.device, self.config.dtype)

    # --- methods ----------------------------------------------------------------------------------------
    def _method(self, name: str, work: Workload) -> tuple[dict, list[dict]]:
        timings, start, cpu = [], time.perf_counter(), time.process_time()  # cpu: this process's, both threads'
        if name in READERS:
            answers, extra = self._reader(name, work, timings), {"storage_bytes": 0, "storage_bytes_per_doc": 0}
        elif name.startswith("prag"):
            answers, extra = self._prag(name, work, timings)
        elif name.startswith("dyprag"):
            answers, extra = self._dyprag_answers(name, work, timings)
        else:
            answers, extra = self._poly(name, work, timings)
        # a row resumed from saved chunks (eval.partial) adds the clock of the processes that answered them
        earlier = extra.pop("_earlier", {"wall": 0.0, "cpu": 0.0, "encode": 0.0})
        wall, cpu = time.perf_counter() - start + earlier["wall"], time.process_time() - cpu + earlier["cpu"]
        answer_seconds = wall - extra.pop("_encode_seconds", 0.0) - earlier["encode"]
        row = score_row(name, work.questions, answers, work.retrieved, timings, answer_seconds)
        # ~2 (its two threads busy) on this CPU alone; lower: paused (SIGSTOP) or sharing the cores, its times inflated
        row.update(extra, cpu_per_wall=round(cpu / wall, 2))
        log.info("%s: F1 %.1f", name, row["f1"])
        return row, [prediction(q, a, r) for q, a, r in zip(work.questions, answers, work.retrieved)]

    def _reader(self, name: str, work: Workload, timings: list[float]) -> list[Answer]:
        hits = gold_hits(work.questions) if name == "rag-gold" else work.hits  # gold may lie outside work.docs
        return reader(name, self._lm("base"), work.corpus).answer(work.texts, hits, self.config.generation,
                                                                   self.progress, timings)

    def _samples(self, work: Workload, lm: LoadedModel, recipe: str = "poly") -> list[Sample]:
        """The augmented documents' training samples: poly's (the build's settings) or PRAG's published recipe."""
        b = self.config.build
        augs = augment_documents(work.docs, b.augmenter, lm, cache=self.out / "augment-cache.jsonl",
                                 progress=self.progress, max_qa=PRAG_QA if recipe == "prag" else b.max_qa, url=b.augment_url,
                                 model_name=b.augment_model)
        return prag_samples(work.docs, augs) if recipe == "prag" else build_samples(work.docs, augs, b)

    def _prag(self, name: str, work: Workload, timings: list[float]) -> tuple[list[Answer], dict]:
        """PRAG's rows chunk by chunk (eval.partial): each chunk's documents trained, then its questions answered
        and saved, so that a run resumes from its committed answers on a machine without these adapters; the rows
        of the plan that share these adapters (prag, -combine, -shuffled) answer each chunk together."""
        cfg, recipe = self._prag_setting(name)
        lm = self._lm(f"prag-{recipe}-lr{cfg.lr:g}-e{cfg.epochs}")  # PEFT wraps its model: one per adapter set
        folder = self.out / f"prag-{recipe}-lr{cfg.lr:g}-e{cfg.epochs}"
        tally = self.out / "partial" / f"{folder.name}.tally.json"  # committed beside the answers
        adapters = self._prag_adapters.get((cfg, recipe)) or PragAdapters(lm, cfg, folder, tally)  # one PEFT wrap
        self._prag_adapters[(cfg, recipe)] = adapters
        start = time.perf_counter()
        samples = self._samples(work, lm, recipe)
        samples_seconds = time.perf_counter() - start
        family = [m for m in self._plan() if m == name or m.startswith("prag") and not self._done(m).exists()
                  and self._prag_setting(m) == (cfg, recipe)]
        hits = {m: self._shuffled(work) if m in SHUFFLED else work.hits for m in family}
        index, ids, tree = {d.id: i for i, d in enumerate(work.docs)}, [q.id for q in work.questions], code_version()["tree"]
        parts = {m: Partial.load(self.out / "partial" / f"{m}.json", ids, tree) for m in family}
        answer_together(parts, ids, lambda step: adapters.encode(samples, work.docs, False, {
            index[h.doc_id] for m, chunk in step.items() for i in chunk for h in hits[m][i]}),
            lambda m, c, t: reader(m.replace("-tuned", "").replace("-shared", "").replace("-shuffled", ""),
                                   docs=work.docs, prag=adapters).answer([work.texts[i] for i in c], [hits[m][i] for i in c],
                                                                        self.config.generation, False, t),
            self.progress, " + ".join(family))
        part = parts[name]
        timings += part.timings
        per_doc = adapters.encode(samples, work.docs, False, only=set())  # the tally, over every process that trained
        storage = adapters.storage_bytes(len(work.docs))
        return part.answers, {"storage_bytes": storage, "storage_bytes_per_doc": storage // len(work.docs),
                              "encode_s_per_doc": round(per_doc, 3), "lr": cfg.lr, "epochs": cfg.epochs,
                              "samples": recipe, "samples_per_doc": round(len(samples) / len(work.docs), 2),
                              "_encode_seconds": samples_seconds + part.clock["encode"] - part.earlier["encode"],
                              "_earlier": part.earlier}

    def _prag_setting(self, name: str) -> tuple[PragConfig, str]:
        """A PRAG row's adapters: its training settings and samples (PRAG's published recipe or poly's)."""
        return (self.config.prag_tuned if name.startswith("prag-tuned") else self.config.prag,
                "poly" if name.startswith("prag-shared") else "prag")

    def _shuffled(self, work: Workload) -> list[list[Hit]]:
        return shuffled_hits(work.hits, [d.id for d in work.docs], self.config.build.training.seed)

    def _dyprag_answers(self, name: str, work: Workload, timings: list[float]) -> tuple[list[Answer], dict]:
        t0 = time.perf_counter()
        dy, trained = self._translator(self.config.dyprag_tuned if "-tuned" in name else self.config.dyprag)
        encode_seconds = time.perf_counter() - t0
        start = time.perf_counter()
        for d in work.docs[:20]:  # what one document costs: reading it and translating it (done per question)
            dy.lora(d)
        per_doc = (time.perf_counter() - start) / min(len(work.docs), 20)
        answers = reader(name.replace("-tuned", ""), docs=work.docs, dyprag=dy).answer(work.texts, work.hits, self.config.generation,
                                                                 self.progress, timings)
        return answers, {"storage_bytes": dy.storage_bytes(), "storage_bytes_per_doc": 0,
                         "encode_s_per_doc": round(per_doc, 3),
                         "encode_s_per_doc_amortised": round(per_doc + trained["seconds"] / len(work.docs), 3),
                         **{f"translator_{k}": v for k, v in trained.items()}, "lr": dy.config.lr,
                         "epochs": dy.config.epochs, "_encode_seconds": encode_seconds + per_doc * min(len(work.docs), 20)}

    def _translator(self, config: DypragConfig) -> tuple[Dyprag, dict]:
        """DyPRAG's translator at `config`, trained once per run folder on PRAG adapters of the held-out
        questions' paragraphs (trained first, resumably, and shared by every translator), then loaded."""
        if config in self._translators:
            return self._translators[config]
        questions, corpus = self.held_out
        folder, lm = self.out / "dyprag", self._lm("dyprag")
        # its LoRAs at PRAG's published settings (lr 3e-4, 1 epoch), as DyPRAG's train_projector.sh makes them
        recipe = PragConfig(seed=self.config.prag.seed)
        prag = self._prag_adapters.get("dyprag") or PragAdapters(lm, recipe, folder / "prag")
        self._prag_adapters["dyprag"] = prag
        train = workload(questions, corpus, self.config.corpus_mode, self.config.k)
        where = folder / f"translator-lr{config.lr:g}-e{config.epochs}"
        if (where / "train.json").exists():  # written last: the translator is whole
            dy = Dyprag(prag, config, Translator.load(where))
            trained = json.loads((where / "train.json").read_text(encoding="utf-8"))
            learned = trained.get("prag_lr", self.config.prag.lr), trained.get("prag_epochs", self.config.prag.epochs)
            if learned != (recipe.lr, recipe.epochs):  # before 2026-12-05 it learned from the run's own PRAG settings
                raise InputError(f"{where}: its translator learned from PRAG adapters at {learned}, not PRAG's "
                                 "published lr and epochs; use a new --out folder.")
        else:
            samples = self._samples(train, lm, recipe="prag")  # the PRAG adapters it learns from, as published
            prag_per_doc = prag.encode(samples, train.docs, self.progress)  # its tally survives resumes
            t0, dy, checkpoint = time.perf_counter(), Dyprag(prag, config), where.with_name(where.name + ".checkpoint")
            history = dy.train(train.docs, samples, self.progress, checkpoint)
            seconds = time.perf_counter() - t0 + sum(h["seconds_before"] for h in history)  # and earlier processes'
            trained = {"seconds": round(prag_per_doc * len(train.docs) + seconds, 1), "questions": len(questions),
                       "docs": len(train.docs), "prag_s_per_doc": round(prag_per_doc, 3), "prag_lr": recipe.lr,
                       "prag_epochs": recipe.epochs,
                       "translator_s": round(seconds, 1), "history": history}
            dy.translator.save(where)
            atomic.write_text(where / "train.json", json.dumps(trained, indent=1))
            shutil.rmtree(checkpoint, ignore_errors=True)
        self._translators[config] = dy, trained
        return dy, trained

    def _poly(self, name: str, work: Workload, timings: list[float]) -> tuple[list[Answer], dict]:
        t0 = time.perf_counter()
        if name in ADDED:
            kb, folder = self._added_half(work, name), self.out / name.replace("poly", "kb")
            added = kb.manifest.additions[-1]
            encode = added["seconds"] / added["n_docs"]
        else:
            build = self._ablated(name)
            kb, folder = self._kb(work, build, self._kb_folder(build))
            encode = kb.manifest.build_seconds / kb.manifest.n_docs
            if name == "poly-arrow":  # poly's KB with Arrow's rows (method.arrow): what the learned rows add
                kb = kb.with_arrow_routing()
        encode_seconds = time.perf_counter() - t0
        if name == "poly-shuffled-combine":  # the retrieved passages in the prompt, other documents' routing mixed
            answers = kb.answer(work.texts, "poly-combine", generation=self.config.generation, progress=self.progress,
                                timings=timings, hits=work.hits, routing_hits=self._shuffled(work))
        else:
            mode = name if name in KB_MODES else KB_DEFAULT  # the added-half rows, ablations and control answer as poly
            hits = self._shuffled(work) if name in SHUFFLED else work.hits
            answers = reader(mode, kb=kb).answer(work.texts, hits, self.config.generation, self.progress, timings)
        storage = kb.storage_bytes(folder)
        extra = {"storage_bytes": storage["inventory"] + storage["routing"],
                 "storage_bytes_per_doc": storage["routing_per_doc"], "kb_folder_bytes": storage["total"],
                 "encode_s_per_doc": round(encode, 3), "adapters": kb.manifest.inventory.n_adapters,
                 "train_tokens_per_doc": kb.manifest.train_tokens_per_doc,
                 "rank": kb.manifest.inventory.rank, "routing": kb.manifest.build.routing,
                 "_encode_seconds": encode_seconds}
        if name in ADDED:
            base = kb.storage_bytes(self.out / "kb-z-base")
            extra["added_docs"] = added["n_docs"]
            extra["adapters_grown"] = added.get("adapters_grown", 0)
            extra["train_tokens_per_doc"] = added.get("train_tokens_per_doc")
            extra["bytes_added_per_doc"] = round((storage["inventory"] + storage["routing"] - base["inventory"]
                                                  - base["routing"]) / added["n_docs"])
            extra["add_s"] = round(added["seconds"], 1)
            if lifecycle.exists(self.out / "kb"):  # the full build of every document, if this run has one
                full = lifecycle.read_manifest(self.out / "kb")["build_seconds"]
                extra["add_s_over_full_build_s"] = round(added["seconds"] / full, 3)
            extra.update(self._old_answers_kept(work, answers))
        return answers, extra

    def _old_answers_kept(self, work: Workload, answers: list[Answer]) -> dict:
        """The questions whose retrieved documents are all in the base half, answered by the base KB before the
        add and by the KB after it (`answers`): how many answers are byte-identical."""
        old = {d.id for d in work.docs[0::2]}
        picked = [i for i, hs in enumerate(work.hits) if hs and all(h.doc_id in old for h in hs)]
        if not picked:
            return {"old_questions": 0, "old_answers_identical": 0}
        base = KnowledgeBase.load(self.out / "kb-z-base", self._load())
        before = base.answer([work.texts[i] for i in picked], "poly", self.config.k, self.config.generation,
                             self.progress, hits=[work.hits[i] for i in picked])
        same = sum(b.raw == answers[i].raw for b, i in zip(before, picked))
        return {"old_questions": len(picked), "old_answers_identical": same}

    def _ablated(self, name: str) -> BuildConfig:
        b = self.config.build
        if not name.startswith("poly["):
            return b
        key, value = name[5:-1].split("=")
        if key == "routing":
            return replace(b, routing=value)
        field_name = {"adapters": "n_adapters", "rank": "rank"}[key]
        return replace(b, inventory=replace(b.inventory, **{field_name: int(value)}))

    def _kb_folder(self, build: BuildConfig) -> Path:
        if build == self.config.build:
            return self.out / "kb"
        inv = build.inventory
        return self.out / f"kb-M{inv.n_adapters}-r{inv.rank}-{build.routing}"

    def _kb(self, work: Workload, build: BuildConfig, folder: Path) -> tuple[KnowledgeBase, Path]:
        """Load the KB this run built before, else build it (resuming its epoch checkpoints) and save it."""
        if folder in self._kbs:
            return self._kbs[folder], folder
        if lifecycle.exists(folder):
            kb = KnowledgeBase.load(folder, self._load())
            kb.trust_augment_url(build.augment_url)  # this run's own setting, not a received manifest's
        else:
            lm = self._load()
            kb = KnowledgeBase.build(work.docs, lm, build, cache=self.out / "augment-cache.jsonl",
                                     checkpoint_dir=folder.with_name(folder.name + ".ckpt"), progress=self.progress)
            kb.save(folder)
            shutil.rmtree(folder.with_name(folder.name + ".ckpt"), ignore_errors=True)
        self._kbs[folder] = kb
        return kb, folder

    def _added_half(self, work: Workload, name: str) -> KnowledgeBase:
        """The inventory trained on every other document; the rest added to it by routing only (Poly-z), with
        a grown inventory (`growth_for`: as many new adapters as keep the documents per adapter), or routed
        from their embeddings without training."""
        folder, grow = self.out / name.replace("poly", "kb"), name == "poly-grow"
        if lifecycle.exists(folder):
            return KnowledgeBase.load(folder, self._load())
        base_folder = self.out / "kb-z-base"
        self._kb(replace(work, docs=work.docs[0::2]), self.config.build, base_folder)
        kb = self._kbs.pop(base_folder)  # changed below: the other half-added row must start from disk
        added = work.docs[1::2]
        training = self.config.build.training
        training = replace(training, epochs=self.config.add_epochs) if self.config.add_epochs else training
        training = replace(training, lr_adapters=self.config.add_lr) if self.config.add_lr else training
        kb.add(added, training, cache=self.out / "augment-cache.jsonl", progress=self.progress,
               checkpoint_dir=folder.with_name(folder.name + ".ckpt"), no_train=name == "poly-notrain",
               grow=growth_for(len(added), kb.manifest) if grow else 0, context_qa=self.config.add_context_qa)
        kb.save(folder)
        shutil.rmtree(folder.with_name(folder.name + ".ckpt"), ignore_errors=True)
        return kb

    # --- reports ----------------------------------------------------------------------------------------
    def _finished(self) -> list[Path]:
        """Every finished row of the folder, this invocation's in plan order first: a rerun naming fewer methods
        reports the folder's whole run, not only what it was asked this time (methods/ holds every row)."""
        planned = [self._done(m) for m in self._plan()]
        return [*planned, *sorted(set((self.out / "methods").glob("*.json")) - set(planned))]

    def report(self, work: Workload, notes: dict) -> dict:
        done = [json.loads(path.read_text(encoding="utf-8")) for path in self._finished()]
        rows, added = [d["row"] for d in done], {d.id for d in work.docs[1::2]}  # added: the half Poly-z routes only
        for d in done:
            d["row"].update(breakdown(work.questions, work.hits, d["predictions"], added))
        config = {**json.loads((self.out / "config.json").read_text()), "methods": [r["method"] for r in rows]}
        result = {"config": {**config, "n_questions": len(work.questions), "n_docs": len(work.docs), **notes},
                  "storage": storage_claims(rows, len(work.docs)), "routing": routing_report(self.out, work.questions, work.hits), "rows": rows,
                  "predictions": {d["row"]["method"]: d["predictions"] for d in done}}
        atomic.write_text(self.out / "results.json", json.dumps(result, indent=1, ensure_ascii=False))
        atomic.write_text(self.out / "results.md", markdown(result))
        plots.f1_bars(rows, self.out / "f1.png", title=f"{self.config.dataset}: F1 per method")
        return result
