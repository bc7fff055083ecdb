"""Rows a bench run takes from an earlier run of the same questions instead of recomputing them (`bench --rows-from`):
when poly's build defaults change, the readers, PRAG and DyPRAG train and answer exactly as before, and PRAG alone
costs ~11 CPU hours a pair. Only rows that never read the build's settings are taken, and only from a run whose
every other setting (data, model, dtype, PRAG's, DyPRAG's, decoding, retrieval, seed) is this run's."""

import json
from pathlib import Path

from .. import atomic
from ..errors import InputError
from ..settings import differences

# The build's settings that PRAG's rows read too (they train on the same augmenter's QA pairs); bench.BUILD_FREE
# names the rows no other build setting reaches.
AUGMENTER = ("augmenter", "augment_url", "augment_model")
RUN_PLAN = ("methods", "ablations")  # which rows run, not how


def _comparable(config: dict) -> dict:
    """A run folder's config.json without what may differ: the plan, and the build but for its augmenter."""
    build = config.get("build", {})
    return {**{k: v for k, v in config.items() if k not in RUN_PLAN + ("build", "held_out")},
            "augmentation": {k: build.get(k) for k in AUGMENTER}}


def seed_folder(rows_from: str | Path | None, seed: int) -> Path | None:
    """`rows_from`'s run of `seed` (a record may hold fewer seeds than the run asks: those seeds run every row)."""
    if rows_from is None:
        return None
    if not Path(rows_from).is_dir():
        raise InputError(f"--rows-from {rows_from}: no such folder; give an earlier bench run's --out folder.")
    return folder if (folder := Path(rows_from) / f"seed-{seed}").is_dir() else None


def check_record(source: Path, out: Path) -> None:
    """Refuses `source` (an earlier run's folder of one seed) unless its settings are `out`'s but the build's;
    `out`'s config.json is already written."""
    path = source / "config.json"
    if not path.exists():
        raise InputError(f"--rows-from {source}: no config.json there; give an earlier bench run's --out folder "
                         "(with --seeds, the folder holding its seed-S folders).")
    theirs = json.loads(path.read_text(encoding="utf-8"))
    ours = json.loads((out / "config.json").read_text(encoding="utf-8"))
    a, b = _comparable(theirs), _comparable(ours)
    diff = [d for k in sorted(set(a) | set(b)) for d in differences(k, a.get(k), b.get(k))]
    held = theirs.get("held_out"), ours.get("held_out")
    if None not in held and held[0] != held[1]:
        diff.append("held_out: DyPRAG's training questions differ")
    if diff:
        raise InputError(f"--rows-from {source}: that run differs from this one beyond poly's build "
                         f"({'; '.join(diff)}); its rows would not be this run's. Drop --rows-from.")


def copy_row(source: Path, dest: Path, record: bool) -> None:
    """A finished row into this run; one from an earlier run's `record` says which run computed it (its `code`
    field says at which commit), a reader's from this run's first seed is copied as it is."""
    if not record:
        atomic.write_text(dest, source.read_text(encoding="utf-8"))
        return
    saved = json.loads(source.read_text(encoding="utf-8"))  # {"row": ..., "predictions": ...}, as Bench saves it
    saved["row"] = {**saved["row"], "copied_from": str(source.parent.parent)}
    atomic.write_text(dest, json.dumps(saved, ensure_ascii=False))
