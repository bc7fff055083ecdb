"""A living knowledge base: numbered versions, history, rollback, and a look at its routing.

KB/                      the current version, in the layout `store` documents; manifest.json has "version"
KB.versions/v1/          every other version, each a whole KB folder in the same layout
KB.versions/v2/ ...
A save over an existing KB first keeps the version it replaces in the history, then swaps the new one in
atomically (`atomic.staged_dir`): a stop at any point leaves the current version whole. Each version is a
copy of its own (no hard links): a file damaged in one version cannot damage another, so rolling back to
an intact version always works. The history keeps the newest `keep_versions` (KEEP_VERSIONS by default);
older ones are deleted after each save, so disk stays bounded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from .. import atomic
from . import storage
from ..text.corpus import Document, load_corpus
from ..errors import InputError
from ..method.routing import entropy_stats, normalize

log = logging.getLogger("polyprag")

MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"  # the manifest's own sha256: the manifest lists every other file's
_VERSION_DIR = re.compile(r"v(\d+)")


def history_dir(folder: str | Path) -> Path:
    folder = atomic.real(folder)
    return folder.with_name(f"{folder.name}.versions")


def exists(folder: str | Path) -> bool:
    """Whether `folder` holds a knowledge base (a manifest), without reading it."""
    return (Path(folder) / MANIFEST).exists()


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest, with "version" (1 before versions existed) and "changes"; None if no KB."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path} is not valid UTF-8 JSON ({e}): it was damaged or cut short. Roll back to an "
                         f"intact version (`polyprag versions {folder}`) or rebuild the knowledge base.") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("base_model"), dict):
        raise InputError(f"{path} is not a polyprag manifest (a JSON object with \"base_model\"); "
                         "point at a folder written by `polyprag build`.")
    return {"version": 1, "changes": [], **manifest}


def checksums(folder: Path) -> dict[str, str]:
    """sha256 of every file in a KB folder but its manifest, by path relative to the folder."""
    return {p.relative_to(folder).as_posix(): _sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in (MANIFEST, MANIFEST_SUM)}


def seal_manifest(folder: Path) -> None:
    """Write MANIFEST_SUM for the folder's manifest.json, once it is final."""
    (folder / MANIFEST_SUM).write_text(_sha256(folder / MANIFEST) + "\n", encoding="utf-8")


def verify_files(folder: Path, manifest: dict) -> None:
    """Refuse a KB whose files are not those its manifest lists, or whose manifest is not the one saved:
    missing, truncated, damaged or altered."""
    sealed = folder / MANIFEST_SUM
    if sealed.is_file() and sealed.read_text(encoding="utf-8").strip() != _sha256(folder / MANIFEST):
        raise InputError(f"{folder / MANIFEST}: its sha256 is not the one {MANIFEST_SUM} recorded when it was saved, "
                         f"so it was altered or damaged; roll back to an intact version (`polyprag versions "
                         f"{folder}`) or rebuild the knowledge base.")
    listed = manifest.get("files")
    if listed is None:
        if manifest.get("format_version", 1) >= 2:
            raise InputError(f"{folder / MANIFEST} lists no file checksums, which every KB of format "
                             f"{manifest['format_version']} has: the manifest was edited. Roll back to an intact "
                             f"version (`polyprag versions {folder}`) or rebuild the knowledge base.")
        log.warning("%s was saved without file checksums (format 1); its next save adds them", folder)
        return
    fix = (f"roll back to an intact version (`polyprag versions {folder}`, then `polyprag rollback {folder} N`) "
           "or rebuild the knowledge base")
    for rel, digest in listed.items():
        path = folder / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise InputError(f"{folder / MANIFEST} lists the file {rel!r} outside the KB folder; {fix}.")
        if not path.is_file():
            raise InputError(f"{path} is missing, but the manifest lists it; {fix}.")
        found = _sha256(path)
        if found != digest:
            raise InputError(f"{path}: its sha256 {found[:16]}… is not the manifest's {digest[:16]}…, so the file "
                             f"was altered or damaged after it was saved; {fix}.")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def versions(folder: str | Path) -> list[dict]:
    """Every version of the KB at `folder`, oldest first: version, updated, n_docs, change, current."""
    with atomic.folder_lock(folder, shared=True):
        return _versions(Path(folder))


def _versions(folder: Path) -> list[dict]:
    atomic.recover_dir(folder)
    if not (folder / MANIFEST).exists():
        raise InputError(f"{folder} is not a polyprag knowledge base (no {MANIFEST}); build one with `polyprag build`.")
    try:
        current = read_manifest(folder)
    except InputError as e:  # a damaged current version: list the history, so that it can be rolled back
        log.warning("the current version is damaged (%s); roll back to one of the versions listed", e)
        current = None
    found = {v: read_manifest(path) for v, path in _history(folder).items()}
    if current is not None:
        found[current["version"]] = current  # a stop mid-save can leave the current one in history too
    return [_row(v, m, current is not None and v == current["version"]) for v, m in sorted(found.items())
            if m is not None]


def _history(folder: Path) -> dict[int, Path]:
    hist = history_dir(folder)
    if not hist.is_dir():
        return {}
    return {int(m[1]): p for p in hist.iterdir() if (m := _VERSION_DIR.fullmatch(p.name)) and p.is_dir()}


def _row(version: int, manifest: dict, current: bool) -> dict:
    changes = [c for c in manifest["changes"] if c.get("version") == version]
    return {"version": version, "updated": manifest.get("updated", manifest.get("created", "")),
            "n_docs": manifest["n_docs"], "change": "; ".join(map(describe_change, changes)) or "(not recorded)",
            "changes": changes, "current": current}


def describe_change(change: dict) -> str:
    """One line per change record: "add 2 (pell, orrin)", "remove 1 (glass)", "retrain 4 docs"."""
    ids = change.get("ids", [])
    shown = ", ".join(ids[:3]) + (f", … +{len(ids) - 3}" if len(ids) > 3 else "")
    op = change["op"]
    if op in ("add", "remove"):
        return f"{op} {len(ids)} ({shown})"
    if op == "retrain":
        return f"retrain {change['n_docs']} docs" + (f" (+{len(ids)}: {shown})" if ids else "")
    return f"{op} {change['n_docs']} docs" if "n_docs" in change else op


def next_version(folder: str | Path, own: int, changed: bool) -> int:
    """The number a save into `folder` gets: the KB's own (one more if it changed since its last save), and
    past every version this folder has had, so a number never names two different KBs."""
    folder = Path(folder)
    seen = list(_history(folder))
    current = read_manifest(folder)
    if current is not None:
        seen.append(current["version"])
    return max([own + changed] + [v + 1 for v in seen])


KEEP_VERSIONS = 20  # versions kept in the history besides the current one (`--keep-versions`)


@contextmanager
def staged_version(folder: str | Path, keep_versions: int = KEEP_VERSIONS):
    """`atomic.staged_dir`, and the version it replaces is kept in the history first (a copy); after the swap
    the history keeps its newest `keep_versions`."""
    folder = Path(folder)
    atomic.recover_dir(folder)
    with atomic.staged_dir(folder) as tmp:
        yield tmp
        current = read_manifest(folder)
        if current is not None:
            _archive(folder, current["version"])
    prune(folder, keep_versions)


def prune(folder: Path, keep: int) -> list[int]:
    """Delete all but the newest `keep` history versions; returns the versions deleted."""
    old = sorted(_history(folder))[: max(len(_history(folder)) - keep, 0)]
    for v in old:
        shutil.rmtree(_history(folder)[v], ignore_errors=True)
    if old:
        log.info("%s: deleted history version(s) %s (keeping the newest %d)", folder, old, keep)
    return old


def rollback(folder: str | Path, version: int) -> None:
    """Make `version` current (atomic swap); the version it replaces goes to the history, so this can be undone.
    Under the folder's lock: a rollback and another writer's save happen one after the other."""
    folder = Path(folder)
    with atomic.folder_lock(folder):
        _rollback(folder, version)


def _rollback(folder: Path, version: int) -> None:
    table = _versions(folder)
    current = next((v["version"] for v in table if v["current"]), None)  # None: its manifest is damaged
    if version == current:
        log.info("%s is already at version %d", folder, version)
        return
    source = _history(folder).get(version)
    if source is None:
        raise InputError(f"{folder} has no version {version!r}; available: "
                         f"{', '.join(str(v['version']) for v in table)} (see `polyprag versions {folder}`).")
    with atomic.staged_dir(folder) as tmp:
        _copy_tree(source, tmp)
        _archive(folder, current if current is not None else f"damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    shutil.rmtree(source, ignore_errors=True)  # it is current now; history holds only the other versions


def _archive(folder: Path, version: int | str) -> None:
    """Keep `folder` as history version `version` (or a damaged one under its own name, never listed as a
    version): copied into a temp folder, renamed into place."""
    hist = history_dir(folder)
    target = hist / (f"v{version}" if isinstance(version, int) else version)
    if target.exists():  # kept by an earlier save that stopped before its swap
        return
    tmp = hist / f".v{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _copy_tree(folder, tmp)
    os.replace(tmp, target)


def _copy_tree(src: Path, dst: Path) -> None:
    """Copies, never hard links: versions share no inode, so damage to one file stays in one version."""
    for path in sorted(src.rglob("*")):
        out = dst / path.relative_to(src)
        if path.is_dir():
            out.mkdir(parents=True, exist_ok=True)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)


# ---------------------------------------------------------------- inspection


def routing_weights(folder: str | Path) -> tuple[list[Document], np.ndarray]:
    """The documents and their inference weights normalize(σ(Z)), (N, G, M); no model needed."""
    with atomic.folder_lock(folder, shared=True):
        return _routing_weights(Path(folder))


def _routing_weights(folder: Path) -> tuple[list[Document], np.ndarray]:
    manifest = read_manifest(folder)
    if manifest is None:
        raise InputError(f"{folder} is not a polyprag knowledge base (no {MANIFEST}); build one with `polyprag build`.")
    verify_files(folder, manifest)
    logits = load_file(folder / "routing.safetensors")["logits"]  # (N, G, M)
    return load_corpus(folder / "docs.jsonl"), normalize(torch.sigmoid(logits.float())).numpy()  # fp16 stored


def describe(folder: str | Path, top: int = 5, neighbours: int = 3) -> dict:
    """Adapters, routing entropy and sparsity, the most used adapters, and `top` documents' nearest documents
    in routing space (cosine over the flattened inference weights)."""
    from .plots import routing_stats  # matplotlib only when a report is asked for

    folder = Path(folder)
    with atomic.folder_lock(folder, shared=True):
        docs, w = _routing_weights(folder)
        manifest = read_manifest(folder)
        with safe_open(folder / "inventory.safetensors", "pt") as f:
            n_layers = sum(k.endswith("lora_A") for k in f.keys())
    n, g, m = w.shape
    stats = routing_stats(w)
    usage = np.asarray(stats["mean_usage"])
    order = np.argsort(-usage, kind="stable")[:top]
    return {"folder": str(folder), "version": manifest["version"], "n_docs": n,
            "base_model": manifest["base_model"]["spec"],
            "adapters": {"n_adapters": m, "rank": manifest["inventory"]["rank"],
                         "alpha": manifest["inventory"]["alpha"], "targets": manifest["inventory"]["targets"],
                         "layers": n_layers, "routing": manifest["routing"], "groups": g,
                         "storage": manifest.get("storage", storage.LEGACY)},
            "entropy_mean": stats["entropy_mean"],
            **{k: v for k, v in entropy_stats(torch.from_numpy(w)).items() if k != "entropy"},
            "training": manifest.get("diagnostics", []),  # per epoch: loss and routing diagnostics
            "additions": [{k: a.get(k) for k in ("at", "n_docs", "adapters_grown", "n_adapters", "epochs", "seconds",
                                                 "tensor_bytes_added")} for a in manifest.get("additions", [])],
            "sparsity": float((w < 1 / (2 * m)).mean()),
            "sparsity_threshold": 1 / (2 * m),
            "top_adapters": [{"adapter": int(i), "mean_weight": float(usage[i])} for i in order],
            "neighbours": _neighbours(docs, w.reshape(n, -1), top, neighbours)}


def _neighbours(docs: list[Document], x: np.ndarray, top: int, k: int) -> list[dict]:
    """For `top` documents spread over the KB, the `k` others with the highest cosine of x (N, D)."""
    unit = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    sim = unit @ unit.T  # (N, N)
    np.fill_diagonal(sim, -np.inf)
    picks = sorted(set(np.linspace(0, len(docs) - 1, min(top, len(docs))).round().astype(int).tolist()))
    out = []
    for i in picks:
        near = [j for j in np.argsort(-sim[i], kind="stable")[:k] if np.isfinite(sim[i, j])]
        out.append({"id": docs[i].id, "title": docs[i].title,
                    "nearest": [{"id": docs[j].id, "cosine": float(sim[i, j])} for j in near]})
    return out


def plot_routing(folder: str | Path, path: str | Path) -> Path:
    """PCA of the documents' routing vectors, coloured by `group_label`."""
    from .plots import routing_pca

    docs, w = routing_weights(folder)
    return routing_pca(w, [group_label(d) for d in docs], path, title=f"routing of {len(docs)} documents")


def group_label(doc: Document) -> str:
    """Chunks of one source share a label (the id before "#"); else the title's first word (HotpotQA-style
    titles of one subject often share it), else the id's first word."""
    if "#" in doc.id:
        return doc.id.split("#", 1)[0]
    words = re.findall(r"\w+", doc.title) or re.findall(r"[^\W_]+", doc.id) or [doc.id]
    return words[0].lower()
