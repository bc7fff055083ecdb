"""The commands that change or look into a knowledge base in place: add, compact, remove, versions, rollback,
inspect (the others: commands.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rich.table import Table

from . import distributed
from .kb import lifecycle
from .commands import cache_of, console, diagnostics_table, keep_of, load_kb, read_docs, save_once, write_json
from .errors import ConflictError, InputError
from .kb.knowledge import KnowledgeBase, growth_for, rebase
from .kb.lifecycle import KEEP_VERSIONS


def cmd_add(args) -> None:
    if args.epochs is not None and args.epochs < 1:
        raise InputError(f"--epochs {args.epochs}: train for at least 1 epoch.")
    if args.lr_adapters is not None and not args.lr_adapters > 0:
        raise InputError(f"--lr-adapters {args.lr_adapters}: must be > 0.")
    if args.context_qa is not None and args.context_qa < 0:
        raise InputError(f"--context-qa {args.context_qa}: give 0 or more passage samples per document.")
    docs = read_docs(args.corpus, args.chunk_words)  # read and check the new documents before loading a model
    kb = load_kb(args)
    before = len(kb.docs)
    training = kb.manifest.build.training
    training = replace(training, epochs=args.epochs) if args.epochs else training
    training = replace(training, lr_adapters=args.lr_adapters) if args.lr_adapters else training
    if args.retrain and (args.no_train or args.grow != "0" or args.context_qa is not None):
        raise InputError("--retrain re-encodes everything into the build's inventory; --no-train, --grow and "
                         "--context-qa apply to an addition only. Pick one.")
    if args.retrain and distributed.size() > 1:
        raise InputError("--retrain runs in one process (a save that meets another writer's version retrains "
                         "again); launch it without torchrun.")
    if args.retrain:
        seconds = kb.retrain(docs, training, cache=cache_of(args))
        _save_rebasing(kb, Path(args.kb), cache_of(args), keep_of(args))
    else:
        seconds = kb.add(docs, training, cache=cache_of(args), no_train=args.no_train, grow=_growth(args, len(docs), kb),
                         context_qa=args.context_qa)
        save_once(kb, Path(args.kb), keep_of(args))
    grown = (kb.manifest.additions or [{}])[-1].get("adapters_grown", 0) if not args.retrain else 0
    how = ("retrained on all documents" if args.retrain else "routed without training, inventory unchanged"
           if args.no_train else f"{grown} adapters grown, old ones unchanged" if grown else "Poly-z, inventory unchanged")
    console.print(f"{args.kb}: version {kb.manifest.version}, {before} → {len(kb.docs)} documents "
                  f"({how}, {seconds:.0f} s)", highlight=False)


def cmd_compact(args) -> None:
    if (args.adapters is not None and args.adapters < 1) or (args.epochs is not None and args.epochs < 1):
        raise InputError(f"--adapters {args.adapters} / --epochs {args.epochs}: both must be >= 1.")
    if distributed.size() > 1:
        raise InputError("compact runs in one process (a save that meets another writer's version retrains "
                         "again); launch it without torchrun.")
    kb = load_kb(args)
    before = kb.manifest.inventory.n_adapters
    training = kb.manifest.build.training
    training = replace(training, epochs=args.epochs) if args.epochs else training
    seconds = kb.retrain([], training, cache=cache_of(args), n_adapters=args.adapters)
    _save_rebasing(kb, Path(args.kb), cache_of(args), keep_of(args))
    console.print(f"{args.kb}: version {kb.manifest.version}, {len(kb.docs)} documents, {before} → "
                  f"{kb.manifest.inventory.n_adapters} adapters ({seconds:.0f} s)", highlight=False)


def _save_rebasing(kb: KnowledgeBase, folder: Path, cache: Path, keep: int = KEEP_VERSIONS, attempts: int = 5) -> None:
    """A long re-encoding is not thrown away when another writer saved meanwhile: their changes are carried
    over (`kb.rebase`) and the save tried again."""
    for _ in range(attempts - 1):
        try:
            kb.save(folder, keep)
            return
        except ConflictError:
            rebase(kb, folder, cache)
    kb.save(folder, keep)


def _growth(args, n_new: int, kb: KnowledgeBase) -> int:
    if args.grow == "auto":
        return growth_for(n_new, kb.manifest)
    if not args.grow.isdigit():
        raise InputError(f"--grow {args.grow!r}: give a number of adapters (0 or more) or 'auto'.")
    return int(args.grow)


def cmd_remove(args) -> None:
    kb = load_kb(args)
    before = len(kb.docs)
    kb.remove(args.ids)
    kb.save(args.kb, keep_of(args))
    console.print(f"{args.kb}: version {kb.manifest.version}, {before} → {len(kb.docs)} documents",
                  highlight=False)


def cmd_versions(args) -> None:
    t = Table(title=f"{args.kb}: versions")
    for col in ("version", "current", "updated (UTC)", "documents", "change"):
        t.add_column(col, justify="right" if col in ("version", "documents") else "left")
    for v in lifecycle.versions(args.kb):
        updated = v["updated"][:19].replace("T", " ")  # to the second, in UTC
        t.add_row(str(v["version"]), "*" if v["current"] else "", updated, str(v["n_docs"]), v["change"])
    console.print(t)


def cmd_rollback(args) -> None:
    lifecycle.rollback(args.kb, args.version)
    current = next(v for v in lifecycle.versions(args.kb) if v["current"])
    console.print(f"{args.kb}: version {current['version']} is current ({current['n_docs']} documents); "
                  "the version it replaced stays in the history", highlight=False)


def cmd_inspect(args) -> None:
    if args.top < 0:
        raise InputError(f"--top {args.top}: give 0 or more.")
    report = lifecycle.describe(args.kb, top=args.top)
    a = report["adapters"]
    console.print(f"[bold]{args.kb}[/] (version {report['version']}, base model {report['base_model']})\n"
                  f"documents: {report['n_docs']}\n"
                  f"adapters: M={a['n_adapters']}, rank {a['rank']}, alpha {a['alpha']:g}, targets "
                  f"{','.join(a['targets'])} ({a['layers']} layers), routing {a['routing']} ({a['groups']} "
                  f"group{'s' if a['groups'] > 1 else ''} per document)\n"
                  f"routing entropy (mean, / log M): {report['entropy_mean']:.3f}; effective adapters per "
                  f"document (exp entropy): {report['effective_adapters']:.2f} of {a['n_adapters']}\n"
                  f"within each layer: entropy {report['entropy_per_layer']:.3f}, effective adapters "
                  f"{report['effective_adapters_per_layer']:.2f}\n"
                  f"sparsity (share of weights < 1/(2M) = {report['sparsity_threshold']:.3g}): "
                  f"{report['sparsity']:.3f}", highlight=False)
    if report["training"]:
        console.print(diagnostics_table(report["training"]))
    if report["additions"]:
        console.print(_additions_table(report["additions"]))
    used = Table(title="most used adapters")
    used.add_column("adapter", justify="right")
    used.add_column("mean weight", justify="right")
    for row in report["top_adapters"]:
        used.add_row(str(row["adapter"]), f"{row['mean_weight']:.4f}")
    console.print(used)
    near = Table(title="nearest documents in routing space (cosine of inference weights)")
    near.add_column("document")
    near.add_column("nearest")
    for row in report["neighbours"]:
        near.add_row(row["id"], ", ".join(f"{n['id']} ({n['cosine']:.4f})" for n in row["nearest"]))
    console.print(near)
    if args.plot:
        console.print(f"wrote {lifecycle.plot_routing(args.kb, args.plot)}")
    if args.json_out:
        write_json(report, Path(args.json_out))
        console.print(f"wrote {args.json_out}")


def _additions_table(additions: list[dict]) -> Table:
    t = Table(title="additions since the build")
    for name in ("at", "documents", "adapters grown", "M after", "epochs", "seconds", "tensor bytes added"):
        t.add_column(name, justify="left" if name == "at" else "right")
    for a in additions:
        t.add_row(*[("-" if a.get(k) is None else str(a[k])) for k in
                    ("at", "n_docs", "adapters_grown", "n_adapters", "epochs", "seconds", "tensor_bytes_added")])
    return t
