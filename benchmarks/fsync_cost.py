"""What fsync costs a save: a KB folder's files written into a staged copy and swapped in (`atomic.staged_dir`,
as every save does), with the fsyncs and without them, median of --repeat rounds each, interleaved.

    .venv/bin/python benchmarks/fsync_cost.py KB [--repeat 5] [--json OUT.json]

Prints a table and writes JSON. Copies into a temporary folder beside nothing of the KB's: the KB is only read.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from polyprag import atomic


def save_once(src: Path, dst: Path, durable: bool) -> float:
    """Seconds to stage a copy of `src`'s files and swap it in at `dst`, with or without fsync."""
    keep = atomic._durable, atomic.fsync_dir
    if not durable:
        atomic._durable, atomic.fsync_dir = (lambda root: None), (lambda folder: None)
    try:
        start = time.perf_counter()
        with atomic.staged_dir(dst) as tmp:
            for path in sorted(src.rglob("*")):
                out = tmp / path.relative_to(src)
                if path.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                else:
                    out.write_bytes(path.read_bytes())
        return time.perf_counter() - start
    finally:
        atomic._durable, atomic.fsync_dir = keep


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kb")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", dest="json_out")
    args = p.parse_args()
    src = Path(args.kb)
    size = sum(f.stat().st_size for f in src.rglob("*") if f.is_file())
    files = sum(1 for f in src.rglob("*") if f.is_file())
    times: dict[str, list[float]] = {"with fsync": [], "without fsync": []}
    with tempfile.TemporaryDirectory(dir=src.parent) as scratch:  # the KB's own file system
        dst = Path(scratch) / "kb"
        for _ in range(args.repeat):
            for name, durable in (("with fsync", True), ("without fsync", False)):
                times[name].append(save_once(src, dst, durable))
                shutil.rmtree(dst, ignore_errors=True)
    result = {"kb": str(src), "bytes": size, "files": files, "repeat": args.repeat,
              "median_s": {k: round(statistics.median(v), 4) for k, v in times.items()}, "all_s": times}
    m = result["median_s"]
    print(f"| save of {files} files, {size / 2**20:.1f} MiB | median s (of {args.repeat}) |\n|---|---|")
    for k, v in m.items():
        print(f"| {k} | {v:.3f} |")
    print(f"fsync adds {m['with fsync'] - m['without fsync']:.3f} s per save")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
