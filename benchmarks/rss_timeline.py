"""Where a command's memory peaks: its RSS sampled every 50 ms, printed beside each log line it writes.

    .venv/bin/python benchmarks/rss_timeline.py polyprag build docs.jsonl --out /tmp/kb --epochs 1

Each stderr line (progress bars left out) is stamped with the seconds since start, the RSS then and the peak
so far; the last line gives the peak and the log line it followed. /usr/bin/time gives the peak alone.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psutil

PROGRESS = ("it/s", "s/it", "batch/s", "s/batch")


def main(cmd: list[str]) -> None:
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, bufsize=1)
    proc, start = psutil.Process(p.pid), time.time()
    state = {"rss": 0, "peak": 0, "peak_s": 0.0, "last": "", "peak_after": ""}

    def sample() -> None:
        while p.poll() is None:
            try:
                rss = proc.memory_info().rss
            except psutil.Error:
                return
            state["rss"] = rss
            if rss > state["peak"]:
                state.update(peak=rss, peak_s=time.time() - start, peak_after=state["last"])
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    for line in p.stderr:
        line = line.strip()
        if line and not any(s in line for s in PROGRESS):
            state["last"] = line[:90]
            print(f"{time.time() - start:7.1f} s  rss {state['rss'] / 2**20:6.0f} MiB  peak {state['peak'] / 2**20:6.0f} "
                  f"MiB | {line[:110]}", flush=True)
    p.wait()
    print(f"peak {state['peak'] / 2**20:.0f} MiB at {state['peak_s']:.1f} s, after: {state['peak_after']}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    main(sys.argv[1:])
