"""Storing a knowledge base: one folder, written as a whole new version or not at all, read back checked.

KB/
  manifest.json           format version, base model + fingerprint, the build config, training log, changes
  inventory.safetensors   M LoRA pairs per target layer, keyed by module path (bf16 by default: storage.py)
  routing.safetensors     routing logits (N_docs, G, M); row i is line i of docs.jsonl; cluster centroids and
                          the router (weight, bias, centre) when the build used them
  docs.jsonl              id, title, text
  augment.jsonl           the augmentations the adapters were trained on (a cache for rebuilds)
  index/                  BM25 (bm25s arrays + JSON)
Writes go to a sibling temp folder renamed into place: a KB is the old version or the new one. A save over
an existing KB keeps the replaced version in KB.versions/v<N>/ (`lifecycle`: versions, rollback).
The manifest's "changes" lists what produced each version: build, add (Poly-z), remove, retrain.
This module (with `lifecycle`) is the one that opens a KB's files; it knows files and tensors, not models' layers:
`knowledge` puts what it reads into a model.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from .. import atomic
from ..text.augment import Augmentation, read_augmentations, write_augmentations
from ..text.corpus import Document, read_written, write_jsonl
from ..errors import ConflictError, InputError
from .lifecycle import (KEEP_VERSIONS, checksums, describe_change, next_version, read_manifest, seal_manifest,
                        staged_version, verify_files)
from .manifest import FORMAT_VERSION, Manifest
from ..text.retrieve import BM25Index


@dataclass
class Stored:
    """What one version of a KB folder holds; tensors as the files hold them (storage.pack's precision)."""
    manifest: Manifest
    inventory: dict[str, torch.Tensor]
    routing: dict[str, torch.Tensor]  # "logits" (N, G, M), and "centroids" / the router's when used
    docs: list[Document]
    augmentations: list[Augmentation]
    index: BM25Index


def write(folder: Path, kb: Stored, origin: tuple[Path, int] | None,
          keep_versions: int = KEEP_VERSIONS) -> tuple[Manifest, int | None]:
    """Save `kb` as the folder's next version; `origin`: the (folder, version) it was read from or last saved
    to, and into that folder it commits only on top of that version (ConflictError otherwise). The history
    keeps the newest `keep_versions`. Returns the manifest as saved and the version it replaced (None if the
    folder held no KB)."""
    _check_finite({**{f"routing {k}": v for k, v in kb.routing.items()},
                   **{f"inventory {k}": v for k, v in kb.inventory.items()}},
                  "not saved", "training diverged: lower --lr-routing / --lr-adapters and train again")
    folder = atomic.real(folder)  # a link to a KB saves into the KB it names, and stays a link
    try:
        with atomic.folder_lock(folder):  # writers one at a time; readers wait only for this
            atomic.recover_dir(folder)  # a stopped swap's old version must count before the number is chosen
            replaced = read_manifest(folder)
            _check_base(folder, replaced, origin)
            manifest = _versioned(kb.manifest, folder, len(kb.docs))
            with staged_version(folder, keep_versions) as tmp:
                # The inventory's config in the file too, so the tensors explain themselves without the manifest;
                # one metadata key, as safetensors writes several in no fixed order (a seeded build: same bytes)
                about = {"format_version": FORMAT_VERSION, "storage": manifest.build.storage,
                         "inventory": manifest.to_json()["inventory"]}
                _write_tensors(kb.inventory, tmp / "inventory.safetensors", {"polyprag": json.dumps(about)})
                _write_tensors(kb.routing, tmp / "routing.safetensors")
                write_jsonl(kb.docs, tmp / "docs.jsonl")
                write_augmentations(kb.augmentations, tmp / "augment.jsonl")
                kb.index.save(tmp / "index")
                manifest = replace(manifest, format_version=FORMAT_VERSION, files=checksums(tmp))
                (tmp / "manifest.json").write_text(json.dumps(manifest.to_json(), indent=1), encoding="utf-8")
                seal_manifest(tmp)
    except OSError as e:
        if not _out_of_space(e):
            raise
        need = sum(t.nbytes for t in [*kb.inventory.values(), *kb.routing.values()]) + 3 * sum(
            len(d.id) + len(d.title) + len(d.text) for d in kb.docs)  # texts in docs, augment and index
        free = shutil.disk_usage(folder.parent).free
        raise InputError(f"not enough space to save {folder} ({e.strerror}): the new version needs about "
                         f"{need:,} bytes, {free:,} are free. The current version is unchanged and the "
                         "half-written copy was removed. Free some space (old versions are folders in "
                         f"{folder.name}.versions/) or save elsewhere, then run it again.") from None
    return manifest, None if replaced is None else replaced["version"]


def read(folder: Path) -> Stored:
    """Every file of one version (even while a writer swaps), checked against the manifest's checksums."""
    with atomic.folder_lock(folder, shared=True):
        manifest = Manifest.from_json(checked_manifest(folder), folder / "manifest.json")
        inventory, routing = load_file(folder / "inventory.safetensors"), read_mapped(folder / "routing.safetensors")
        docs, augs = read_written(folder / "docs.jsonl"), read_augmentations(folder / "augment.jsonl")
        index = BM25Index.load(folder / "index")
    _check_finite({f"inventory.safetensors {k}": v for k, v in inventory.items()}, str(folder), fix(folder),
                  {f"routing.safetensors {k}": n for k, n in nonfinite_in_file(folder / "routing.safetensors").items()})
    if routing["logits"].shape[0] != len(docs):
        raise InputError(f"{folder}: routing.safetensors has {routing['logits'].shape[0]} rows but docs.jsonl has "
                         f"{len(docs)} documents; {fix(folder)}.")
    return Stored(manifest, inventory, routing, docs, augs, index)


def read_documents(folder: Path) -> tuple[int, list[Document]]:
    """One version's number and documents, checked against its manifest (the files of a KB are read here only)."""
    with atomic.folder_lock(folder, shared=True):
        return checked_manifest(folder)["version"], read_written(folder / "docs.jsonl")


def sizes(folder: Path) -> dict[str, int]:
    """Bytes on disk: the whole folder (its index too), the inventory and the routing table."""
    files = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    return {"total": sum(files.values()) + sum(p.stat().st_size for p in (folder / "index").iterdir()),
            "inventory": files["inventory.safetensors"], "routing": files["routing.safetensors"]}


def fix(folder: Path) -> str:
    return f"roll back to an intact version (`polyprag versions {folder}`) or rebuild the knowledge base"


def model_fingerprint(model, legacy: bool = False, with_folder: bool = False) -> str:
    """Architecture, parameter shapes and the first embedding values: differs between base models, not
    between devices, dtypes (values rounded to bf16) or folders, so a KB built on a CPU in fp32 loads on a GPU
    in bf16, from the 16-bit copy of a bundled model, or on another machine.
    `with_folder`: the form KBs written before 2026-12-04 carry (the model's folder in it; still accepted);
    `legacy`: the fp32-exact form of KBs older still (accepted from an fp32 model)."""
    config = model.config.to_dict()
    if not legacy:
        drop = ("dtype", "torch_dtype") if with_folder else ("dtype", "torch_dtype", "_name_or_path")
        config = {k: v for k, v in config.items() if k not in drop}
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, p in model.named_parameters():
        if "lora_" not in name:
            h.update(f"{name}:{tuple(p.shape)};".encode())
    head = model.get_input_embeddings().weight.detach().flatten()[:4096]
    head = head.float() if legacy else head.to(torch.bfloat16).float()
    h.update(head.cpu().numpy().tobytes())
    return h.hexdigest()


def check_base_model(folder: Path, manifest: Manifest, lm) -> None:
    """Refuse a model other than the one the KB was built for (the fingerprint names both)."""
    base = manifest.base_model
    if base.fingerprint in _fingerprints(lm.model):
        return
    found = model_fingerprint(lm.model)
    raise InputError(f"{folder} was built for base model {base.spec!r} (fingerprint {base.fingerprint[:12]}), "
                     f"but the model given is {lm.spec!r} (fingerprint {found[:12]}). Load it with --model "
                     f"{base.spec}, or rebuild the KB for this model."
                     + " (A KB written before 2026-12-04 loads only from the model folder it was built with"
                     + ("." if lm.model.dtype == torch.float32 else "; one written before polyprag's dtype-free "
                        "fingerprint only with --dtype float32.") + ")")


def _fingerprints(model) -> set[str]:
    """The fingerprints that match this model: the current one, the one naming its folder, and the legacy one
    when it is in fp32."""
    legacy = {model_fingerprint(model, legacy=True)} if model.dtype == torch.float32 else set()
    return {model_fingerprint(model), model_fingerprint(model, with_folder=True)} | legacy


def checked_manifest(folder: Path) -> dict:
    """The folder's manifest as JSON, after a stopped swap is recovered and its files are verified."""
    atomic.recover_dir(folder)
    path = folder / "manifest.json"
    manifest = read_manifest(folder)  # an old manifest without "version" reads as version 1
    if manifest is None:
        raise InputError(f"{folder} is not a polyprag knowledge base (no manifest.json); build one with `polyprag build`.")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(f"{path}: format version {manifest['format_version']} is newer than this polyprag "
                         f"reads ({FORMAT_VERSION}); upgrade polyprag.")
    verify_files(folder, manifest)
    return manifest


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_base(folder: Path, current: dict | None, origin: tuple[Path, int] | None) -> None:
    """Refuse to replace a version the KB did not start from (a lost update): see `write`."""
    if origin is None or origin[0] != folder.resolve() or current is None:
        return
    if current["version"] != origin[1]:
        done = [describe_change(c) for c in current["changes"] if c.get("version", 0) > origin[1]]
        raise ConflictError(
            f"{folder} changed while this change was being made: it was at version {origin[1]} when "
            f"it was read and is now at version {current['version']} ({'; '.join(done) or 'another writer'}). "
            "This change was not saved, so nothing is lost; run it again, and it starts from the new version.")


CHANGES_KEPT = 100  # change records a manifest keeps: every version has its own copy of the list


def _versioned(m: Manifest, folder: Path, n_docs: int) -> Manifest:
    """The manifest as saved into `folder`: its version number, and the pending changes stamped with it."""
    stamp = now()
    changed = any("version" not in c and c["op"] != "build" for c in m.changes)
    version = next_version(folder, m.version, changed)
    changes = [c if "version" in c else {**c, "version": version} for c in m.changes]
    if not any(c["version"] == version for c in changes):  # replaces another version, itself unchanged
        changes.append({"op": "save", "n_docs": n_docs, "at": stamp, "version": version})
    if len(changes) > CHANGES_KEPT:  # the first (the build) and the latest: a manifest stays small
        changes = changes[:1] + changes[-(CHANGES_KEPT - 1):]
    return replace(m, version=version, changes=changes, updated=stamp)


def _write_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors bytes written by Python, not by `save_file`: a full disk is then an OSError with its errno."""
    path.write_bytes(safetensors_bytes(tensors, metadata))


def _out_of_space(e: OSError) -> bool:
    """A full disk, a full quota, or a file-size limit: the save cannot fit, whatever it writes."""
    return e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _check_finite(tensors: dict[str, torch.Tensor], where: str, fix: str, counted: dict[str, int] | None = None) -> None:
    """Refuse NaN or infinite values in `tensors`, or in the files whose counts of them are `counted`."""
    bad = {name: int((~torch.isfinite(t)).sum()) for name, t in tensors.items() if not torch.isfinite(t).all()}
    bad.update({name: n for name, n in (counted or {}).items() if n})
    if bad:
        shown = ", ".join(f"{n} ({c} values)" for n, c in list(bad.items())[:3])
        raise InputError(f"{where}: NaN or infinite values in {shown}; {fix}.")


# safetensors dtypes a routing file holds (fp32, fp16 logits; fp32 centroids and router), as numpy reads them
NUMPY_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


def _header(path: Path) -> tuple[int, dict]:
    """Where a safetensors file's data begins, and its header (name → dtype, shape, data_offsets)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    unknown = {k: v["dtype"] for k, v in header.items() if v["dtype"] not in NUMPY_DTYPES}
    if unknown:
        raise InputError(f"{path}: tensors {unknown} are of a type polyprag does not store there; {fix(path.parent)}.")
    return 8 + n, header


def read_mapped(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors as copy-on-write memory maps: rows come from disk when a question uses them,
    so a routing table of a million documents loads in milliseconds and holds memory only for the rows read.
    (safetensors' own loader copies every tensor into memory.) Writes stay private to the process."""
    start, header = _header(path)
    out = {}
    for name, info in header.items():
        first, last = info["data_offsets"]
        dtype, shape = NUMPY_DTYPES[info["dtype"]], tuple(info["shape"])
        if last == first:  # an empty tensor: nothing to map
            out[name] = torch.from_numpy(np.zeros(shape, dtype))
            continue
        try:
            array = np.memmap(path, dtype=dtype, mode="c", offset=start + first, shape=shape)
        except ValueError as e:  # the header promises more bytes than the file has
            raise InputError(f"{path}: {name} does not fit the file ({e}); {fix(path.parent)}.") from None
        out[name] = torch.from_numpy(array)
    return out


def nonfinite_in_file(path: Path, chunk: int = 1 << 22) -> dict[str, int]:
    """NaN and infinite values per tensor of a safetensors file, read in pieces with plain reads (not through a
    memory map, whose pages would stay in the process's memory): a routing file of any size, checked in bounded memory."""
    start, header = _header(path)
    counts = {}
    with open(path, "rb") as f:
        for name, info in header.items():
            dtype = NUMPY_DTYPES[info["dtype"]]
            first, last = info["data_offsets"]
            f.seek(start + first)
            left, bad = (last - first) // np.dtype(dtype).itemsize, 0
            while left > 0:
                piece = np.fromfile(f, dtype=dtype, count=min(left, chunk))
                if not len(piece):  # a truncated file: the checksums refuse it first
                    break
                bad += int((~np.isfinite(piece)).sum())
                left -= len(piece)
            counts[name] = bad
    return counts
