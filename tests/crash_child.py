"""`python crash_child.py N polyprag-args...`: run the polyprag CLI and SIGKILL itself just before its N-th
file-system step (rename, link, fsync, delete, mkdir, or opening a file to write), as a power cut would stop
it. N = 0 runs to the end and prints the steps it took, one kind per line, to stderr after "STEPS".
Nothing in polyprag knows about this: the steps are counted by wrapping the standard library's functions."""

import builtins
import io
import os
import shutil
import signal
import sys

steps: list[str] = []


def counted(kind: str, real):
    def step(*args, **kwargs):
        if kind != "open" or any(c in str(args[1] if len(args) > 1 else kwargs.get("mode", "r")) for c in "wax+"):
            steps.append(kind)
            if len(steps) == KILL_AT:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return step


KILL_AT = int(sys.argv[1])
for name in ("replace", "rename", "link", "fsync", "unlink", "mkdir", "rmdir"):
    setattr(os, name, counted(name, getattr(os, name)))
shutil.rmtree = counted("rmtree", shutil.rmtree)
io.open = counted("open", io.open)
builtins.open = counted("open", builtins.open)

from polyprag.cli import main  # noqa: E402  (after the wrapping: modules bind some functions on import)

code = main(sys.argv[2:])
print("STEPS", *steps, sep="\n", file=sys.stderr)
sys.exit(code)
