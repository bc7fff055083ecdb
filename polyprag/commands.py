"""What each `polyprag` command does, given its parsed flags (cli.py builds the flags and dispatches): read the
inputs, build or load what it needs, run, print and write the results."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
from importlib.resources import files
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import atomic, distributed
from .lm.adapters import InventoryConfig
from .lm.generate import GenerationConfig
from .text.augment import augment_documents, write_augmentations
from .eval.bench import METHODS, Bench, BenchConfig, markdown, run_seeds
from .eval.compare import markdown as compare_markdown
from .text.corpus import Document, chunk_documents, load_corpus, write_jsonl
from .baselines.dyprag import DypragConfig
from .text.datasets import (CORPUS_NOTE, SPLITS, Question, Split, held_out, load_dataset, load_questions,
                       write_questions)
from .errors import InputError
from .eval.evaluate import EvalConfig, EvalResult, code_version, evaluate
from .kb.knowledge import BuildConfig, KnowledgeBase
from .kb import store
from .kb.lifecycle import KEEP_VERSIONS
from .lm.models import DEFAULT_MODEL, load_model, polyprag_home
from .baselines.prag import PragConfig
from .modes import KB_DEFAULT, KB_MODES, MODEL_DEFAULT, MODES, SERVED, needs
from .readers import reader
from .text.retrieve import BM25Index
from .settings import from_args
from .method.config import TrainConfig

console = Console()
log = logging.getLogger("polyprag")
SAMPLE = files("polyprag") / "data" / "sample"
# `demo` builds the sample's first DEMO_DOCS documents and asks their questions: 12 of 30 keep a fresh clone's
# `make demo` under 5 minutes on a 2-core CPU at the build's defaults (BENCHMARKS.md, "The demo's size").
DEMO_DOCS = 12


def print_markdown(text: str) -> None:
    """A markdown table as written, one row a line: rich wraps at 80 columns when stdout is not a terminal, which
    breaks a table piped to a file."""
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def keep_of(args) -> int:
    keep = getattr(args, "keep_versions", KEEP_VERSIONS)
    if keep < 0:
        raise InputError(f"--keep-versions {keep}: keep 0 or more versions (0: no history).")
    return keep


def _generation(args) -> GenerationConfig:
    return from_args(GenerationConfig, args)


def read_docs(path: str, chunk_words: int):
    docs = load_corpus(path)
    return chunk_documents(docs, chunk_words) if chunk_words else docs


def cmd_ask(args) -> None:
    mode = args.mode or (KB_DEFAULT if args.kb else MODEL_DEFAULT)
    if not args.question.strip():
        raise InputError("the question is empty; pass the question as the last argument.")
    if mode in KB_MODES:
        if not args.kb:
            raise InputError(f"--mode {mode} needs --kb KB (build one with `polyprag build CORPUS --out KB`).")
        kb = load_kb(args)
        hits = kb.retrieve([args.question], args.k)
        answer = reader(mode, kb=kb).answer([args.question], hits, _generation(args), progress=False)[0]
        _print_answer(answer, hits[0], {d.id: d for d in kb.docs})
        return
    if MODES[mode].retrieves and not (args.corpus or args.kb):
        raise InputError(f"--mode {mode} needs --corpus FILE or --kb KB (or use a mode that retrieves nothing: "
                         f"{[n for n in SERVED if not MODES[n].retrieves]}).")
    docs, hits = [], []
    if MODES[mode].retrieves:
        docs = store.read_documents(Path(args.kb))[1] if args.kb else read_docs(args.corpus, args.chunk_words)
        hits = BM25Index.build(docs).search([args.question], k=args.k)[0]
    answer = reader(mode, load_lm(args), docs).answer([args.question], [hits], _generation(args), progress=False)[0]
    _print_answer(answer, hits, {d.id: d for d in docs})


def load_lm(args):
    return load_model(args.model or DEFAULT_MODEL, args.device, args.dtype)


def load_kb(args) -> KnowledgeBase:
    kb = KnowledgeBase.load(args.kb, model_for_kb(args), args.device, args.dtype)
    kb.trust_augment_url(getattr(args, "augment_url", None) or "")  # only a URL the operator names is used
    return kb


def model_for_kb(args) -> str | None:
    """A KB names its base model; --model only overrides it when given explicitly."""
    return args.model


def _print_answer(answer, hits, by_id) -> None:
    console.print(f"[bold]{answer.answer}[/]", highlight=False)
    console.print(f"[dim]model output: {answer.raw}[/]", highlight=False)
    for rank, h in enumerate(hits, 1):
        text = by_id[h.doc_id].content().replace("\n", " — ")
        console.print(f"[cyan]{rank}. {h.doc_id}[/] (BM25 {h.score:.2f}) {text[:200]}", highlight=False)


def cmd_serve(args) -> None:
    from .service.serve import serve  # the web stack is imported only by the command that needs it

    serve(args.kb, args.host, args.port, args.model, guard_reads=args.guard_reads, device=args.device,
          dtype=args.dtype, allowed_hosts=tuple(args.allow_host), keep_versions=keep_of(args),
          augment_url=args.augment_url)


def cmd_eval(args) -> None:
    if args.kb:
        if not args.questions:
            raise InputError("--kb needs --questions Q.jsonl (retrieval runs over the KB's own documents).")
        kb = load_kb(args)
        _run(args, load_questions(args.questions), kb.docs, _modes(args.modes), kb=kb)
        return
    if bool(args.dataset) == bool(args.corpus or args.questions):
        raise InputError("pass either --dataset NAME, or both --corpus DOCS and --questions Q.jsonl.")
    if args.dataset:
        if args.n < 1:
            raise InputError(f"--n {args.n}: ask for at least 1 question.")
        questions, docs = load_dataset(args.dataset, args.data_dir, args.n, args.data_file, Split(args.split))
    elif not (args.corpus and args.questions):
        raise InputError("--corpus and --questions go together: give both.")
    else:
        questions, docs = load_questions(args.questions), read_docs(args.corpus, args.chunk_words)
    _run(args, questions, docs, _modes(args.modes))


def cmd_export(args) -> None:
    if args.n < 1:
        raise InputError(f"--n {args.n}: ask for at least 1 question.")
    questions, docs, _ = _bench_data(args)
    out = Path(args.out)
    write_jsonl(docs, out / "docs.jsonl")
    write_questions(questions, out / "questions.jsonl")
    console.print(f"wrote {len(docs)} documents and {len(questions)} questions to {out}")


def _modes(text: str) -> tuple[str, ...]:
    return tuple(m.strip() for m in text.split(",") if m.strip())


def _build_config(args) -> BuildConfig:
    return from_args(BuildConfig, args, inventory=from_args(InventoryConfig, args),
                     training=from_args(TrainConfig, args))


def cache_of(args) -> Path:
    return Path(args.augment_cache) if args.augment_cache else polyprag_home() / "augment-cache.jsonl"


def cmd_augment(args) -> None:
    docs = read_docs(args.corpus, args.chunk_words)
    BuildConfig(augmenter=args.augmenter, augment_url=args.augment_url)  # checks the pair, before any model loads
    lm = load_lm(args) if args.augmenter == "llm" and not args.augment_url else None
    augs = augment_documents(docs, args.augmenter, lm, cache=cache_of(args), max_qa=args.max_qa, url=args.augment_url,
                             model_name=args.augment_model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_augmentations(augs, out)
    console.print(f"wrote {len(augs)} augmentations ({sum(len(a.qa) for a in augs)} QA pairs) to {out}")


def cmd_build(args) -> None:
    config = _build_config(args)  # validate everything before loading a model
    docs = read_docs(args.corpus, args.chunk_words)
    kb = _build(args, docs, config, Path(args.out), resume=args.resume)
    console.print(diagnostics_table(kb.manifest.diagnostics))
    console.print(f"built {args.out}: {len(docs)} documents in {kb.manifest.build_seconds:.0f} s, "
                  f"{kb.storage_bytes(args.out)['total']:,} bytes")


def _build(args, docs, config: BuildConfig, out: Path, resume: bool) -> KnowledgeBase:
    ckpt = out.with_name(out.name + ".ckpt")
    if ckpt.exists() and not resume and distributed.is_main():
        shutil.rmtree(ckpt)  # a fresh build must not pick up an old run's weights
    distributed.barrier()
    kb = KnowledgeBase.build(docs, load_lm(args), config, cache=cache_of(args), checkpoint_dir=ckpt)
    replaced = save_once(kb, out, keep_of(args))
    if distributed.is_main():
        shutil.rmtree(ckpt, ignore_errors=True)
    if replaced is not None:  # a build over a KB is a new version of it, and can be undone
        console.print(f"{out} held a knowledge base (version {replaced}): the new build is version "
                      f"{kb.manifest.version}; `polyprag rollback {out} {replaced}` brings the old one back",
                      highlight=False)
    return kb


def save_once(kb: KnowledgeBase, folder: Path, keep: int = KEEP_VERSIONS) -> int | None:
    """`kb.save`; under several processes (torchrun) process 0 writes and the others wait until it has."""
    replaced = kb.save(folder, keep) if distributed.is_main() else None
    distributed.barrier()
    return replaced


def diagnostics_table(epochs: list[dict]) -> Table:
    """The build's per-epoch record: is routing leaving uniform, are the adapters distinct?"""
    table = Table(title="training, per epoch")
    cols = ("epoch", "loss", "max_abs_z", "routing_grad_norm", "entropy", "effective_adapters", "entropy_per_layer",
            "adapter_cosine")
    for c in cols:
        table.add_column(c.replace("_", " "), justify="right")
    for e in epochs:
        table.add_row(*("-" if e.get(c) is None else f"{e[c]:.4g}" for c in cols))
    return table


def cmd_bench(args) -> None:
    code_version()  # read now, the code this process loaded: a day-long run's checkout may move on meanwhile
    ablations = _ablations(args)  # before any model or data is loaded: fail fast on a bad flag
    seeds = _seeds(args.seeds) if args.seeds else None
    split = Path(args.questions).stem if args.questions else args.split  # your file is its own split
    config = BenchConfig(dataset=args.dataset or "custom", n=args.n, split=split, methods=_methods(args.methods),
                         corpus_mode=args.corpus_mode, k=args.k, build=_build_config(args),
                         prag=PragConfig(lr=args.prag_lr, epochs=args.prag_epochs, seed=args.seed),
                         prag_tuned=PragConfig(lr=args.prag_tuned_lr, epochs=args.prag_tuned_epochs, seed=args.seed),
                         dyprag=DypragConfig(lr=args.dyprag_lr, epochs=args.dyprag_epochs, seed=args.seed),
                         dyprag_tuned=DypragConfig(lr=args.dyprag_tuned_lr, epochs=args.dyprag_tuned_epochs, seed=args.seed),
                         dyprag_train_n=args.dyprag_train_n, generation=_generation(args), ablations=ablations, add_epochs=args.add_epochs,
                         add_lr=args.add_lr, add_context_qa=args.add_context_qa, device=args.device,
                         dtype=args.dtype)  # Bench records the resolved dtype
    questions, corpus, note = _bench_data(args)
    # one bench per --out: two would train into the same seed folders, and each would spoil the other's timings
    with atomic.folder_lock(args.out, timeout_s=0, busy=f"--out {args.out}: another polyprag bench is writing "
                            f"there (the holder of {atomic.lock_path(atomic.real(args.out))}); wait for it to end "
                            "or stop it (`fuser` names it), or give another --out."):
        _bench_run(args, config, seeds, questions, corpus, note)


def _bench_run(args, config: BenchConfig, seeds: list[int] | None, questions, corpus, note: str) -> None:
    notes = {"command": "polyprag " + " ".join(sys.argv[1:]), "corpus_note": note}
    held = ([], [])
    if any(needs(m) == "translator" for m in config.methods) and args.dataset not in (None, "sample"):
        held = held_out(args.dataset, args.data_dir, args.n, args.dyprag_train_n, args.data_file, Split(args.split))
    if seeds:
        summary = run_seeds(args.model or DEFAULT_MODEL, config, seeds, args.out, questions, corpus, notes, held,
                            rows_from=args.rows_from)
        print_markdown(compare_markdown(summary))
        console.print(f"wrote {args.out}/results.json and results.md (each seed's run in {args.out}/seed-S)")
        return
    rows_from = Path(args.rows_from) if args.rows_from else None
    result = Bench(args.model or DEFAULT_MODEL, config, args.out, rows_from=rows_from).run(questions, corpus, notes, held)
    print_markdown(markdown(result))
    console.print(f"wrote {args.out}/results.json, results.md and plots")


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--seeds {text!r}: give comma-separated integers, e.g. --seeds 0,1,2.") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"--seeds {text!r}: give distinct seeds, e.g. --seeds 0,1,2.")
    return seeds


def _methods(text: str) -> tuple[str, ...]:
    """'all' stands for METHODS (not the optional rows), also inside a list ('all,rag-gold')."""
    names = [n for m in _modes(text) for n in (METHODS if m == "all" else (m,))]
    return tuple(dict.fromkeys(names))


def _ablations(args) -> tuple[tuple[str, tuple], ...]:
    """Flags with several values become ablation rows (the main rows keep the default); one value sets it."""
    d = InventoryConfig()
    flags = (("adapters", int, d.n_adapters), ("rank", int, d.rank), ("routing", str, "fine"))
    found = []
    for name, cast, default in flags:
        given = str(getattr(args, name))
        try:
            values = tuple(cast(v.strip()) for v in given.split(",") if v.strip())
        except ValueError:
            raise InputError(f"--{name} {given!r}: give an integer or comma-separated integers.") from None
        if not values or (name == "routing" and any(v not in ("fine", "coarse") for v in values)):
            raise InputError(f"--{name} {given!r}: give one value or a comma-separated list"
                             + (" of fine, coarse." if name == "routing" else "."))
        setattr(args, name, values[0] if len(values) == 1 else default)
        if len(values) > 1:
            found.append((name, values))
    return tuple(found)


def _bench_data(args) -> tuple[list, list, str]:
    if args.dataset == "sample":
        # two questions per document: the first of each is test, the second dev (the same 30 documents)
        questions = load_questions(SAMPLE / "questions.jsonl")[SPLITS.index(args.split)::2]
        return questions[: args.n], load_corpus(SAMPLE / "docs.jsonl"), ""
    if args.dataset:
        questions, docs = load_dataset(args.dataset, args.data_dir, args.n, args.data_file, Split(args.split))
        return questions, docs, CORPUS_NOTE.get(args.dataset, "")
    if not (args.corpus and args.questions):
        raise InputError("pass --dataset NAME, or both --corpus DOCS and --questions Q.jsonl.")
    return load_questions(args.questions)[: args.n], read_docs(args.corpus, args.chunk_words), ""


def cmd_export_lora(args) -> None:
    from .kb.export import export_lora
    from .text.retrieve import Hit

    kb = load_kb(args)
    if args.question is not None:
        hits = kb.retrieve([args.question], args.k)
    else:
        ids = [d.strip() for d in args.docs.split(",") if d.strip()]
        unknown = [d for d in ids if d not in kb.row]
        if unknown or not ids:
            raise InputError(f"--docs {args.docs!r}: {unknown or 'no ids'} not in {args.kb}; ids are those in "
                             "its docs.jsonl (`polyprag inspect` lists counts, `versions` the history).")
        hits = [[Hit(d, 1.0) for d in ids]]
    config = export_lora(kb.lm.model, kb.mixing_weights(hits)[0], args.out, kb.manifest.base_model.spec)
    console.print(f"wrote {args.out}: rank-{config['r']} LoRA on {len(config['target_modules'])} modules, mixing "
                  f"{', '.join(h.doc_id for h in hits[0]) or 'every adapter alike (no document retrieved)'}")


def cmd_bench_speed(args) -> None:
    from .eval.speed import SpeedConfig, bench_speed, markdown

    try:
        sizes = tuple(int(x) for x in args.retrieval_sizes.split(",") if x.strip())
    except ValueError:
        raise InputError(f"--retrieval-sizes {args.retrieval_sizes!r}: give whole numbers, comma-separated "
                         "(e.g. 10000,100000).") from None
    if min(args.n_docs, args.n_questions, args.batch, args.epochs or 1, args.poly_epochs or 1, args.max_new_tokens,
           *sizes) < 1 or min(args.top_layers, args.prag_protocol_epochs, args.paraphrases) < 0:
        raise InputError("--n-docs, --n-questions, --batch, --epochs, --poly-epochs, --max-new-tokens and every "
                         "--retrieval-sizes value must be >= 1, --top-layers, --prag-protocol-epochs and "
                         "--paraphrases >= 0.")
    config = SpeedConfig(model=args.model, n_docs=args.n_docs, n_questions=args.n_questions, batch=args.batch,
                         max_new_tokens=args.max_new_tokens, retrieval_sizes=sizes,
                         **({"poly_epochs": args.epochs, "prag_epochs": args.epochs} if args.epochs else {}),
                         **({"poly_epochs": args.poly_epochs} if args.poly_epochs else {}), top_layers=args.top_layers,
                         prag_protocol_epochs=args.prag_protocol_epochs, paraphrases=args.paraphrases,
                         rss=not args.no_rss, device=args.device, dtype=args.dtype,
                         serve_dtype=args.serve_dtype)
    questions = [q.question for q in load_questions(SAMPLE / "questions.jsonl")]
    result = bench_speed(config, load_corpus(SAMPLE / "docs.jsonl"), questions, Path(args.json_out))
    table = Path(args.json_out).with_suffix(".md")  # written from the same result: the two cannot disagree
    text = markdown(result)
    table.write_text(text + "\n", encoding="utf-8")
    print_markdown(text)
    console.print(f"wrote {args.json_out} and {table}")


def demo_sample(n_docs: int) -> tuple[list[Document], list[Question]]:
    """The sample's first `n_docs` documents and the questions answered from them alone."""
    docs = load_corpus(SAMPLE / "docs.jsonl")
    if not 1 <= n_docs <= len(docs):
        raise InputError(f"--n-docs {n_docs}: the sample holds {len(docs)} documents; pass 1 to {len(docs)}.")
    kept = {d.id for d in docs[:n_docs]}
    return docs[:n_docs], [q for q in load_questions(SAMPLE / "questions.jsonl") if set(q.gold_doc_ids) <= kept]


def cmd_demo(args) -> None:
    docs, questions = demo_sample(args.n_docs)
    config = _build_config(args)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "kb"
        kb = _build(args, docs, config, out, resume=False)
        storage = kb.storage_bytes(out)
        modes = SERVED
        result = _run(args, questions, docs, modes, kb=kb, save=False)
    extra = {"storage_bytes": storage["total"], "storage_bytes_per_doc": storage["routing_per_doc"],
             "inventory_bytes": storage["inventory"], "build_seconds": kb.manifest.build_seconds}
    console.print(f"knowledge base: {storage['total']:,} bytes in all ({storage['inventory']:,} inventory); "
                  f"{storage['routing_per_doc']:,} bytes of routing per document; built in "
                  f"{kb.manifest.build_seconds:.0f} s ({kb.manifest.build.augmenter} augmentation, "
                  f"{kb.manifest.build.training.epochs} epochs)")
    if args.json_out:
        for row in result.rows:
            row.update(extra)
        result.config["build"] = kb.manifest.to_json()
        write_json(result.to_json(), Path(args.json_out))
        console.print(f"wrote {args.json_out}")


def _run(args, questions, docs, modes, kb: KnowledgeBase | None = None, save: bool = True) -> EvalResult:
    config = EvalConfig(modes=modes, k=args.k, generation=_generation(args))
    lm = kb.lm if kb else load_lm(args)
    result = evaluate(lm, questions, docs, config, kb=kb)
    console.print(results_table(result, title=f"{lm.spec}: {len(questions)} questions, {result.config['n_docs']} documents"))
    if save and args.json_out:
        write_json(result.to_json(), Path(args.json_out))
        console.print(f"wrote {args.json_out}")
    return result


def results_table(result: EvalResult, title: str) -> Table:
    t = Table(title=title)
    for col in ("method", "EM", "F1", "acc", "EM_prag", "F1_prag", f"R@{result.config['k']}", "s/q"):
        t.add_column(col, justify="left" if col == "method" else "right")
    for r in result.rows:
        recall = "-" if r["recall_at_k"] is None else f"{r['recall_at_k']:.2f}"
        t.add_row(r["method"], f"{r['em']:.1f}", f"{r['f1']:.1f}", f"{r['acc']:.1f}", f"{r['em_prag']:.1f}",
                  f"{r['f1_prag']:.1f}", recall, f"{r['seconds_per_question']:.2f}")
    return t


def write_json(obj: dict, path: Path) -> None:
    atomic.write_text(path, json.dumps(obj, indent=1, ensure_ascii=False))

