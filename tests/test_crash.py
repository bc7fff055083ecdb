"""Crash safety: `polyprag build` and `polyprag add` SIGKILLed just before one of the renames that swap a version
in, before a random other file-system step, and at a random moment (several seeds). Afterwards the KB loads as
the old version or the new one, never anything else, and `build --resume` finishes an interrupted build."""

import json
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serving import DOCS, build_kb

from polyprag import cli
from polyprag.text.corpus import write_jsonl
from polyprag.errors import InputError
from polyprag.kb.knowledge import KnowledgeBase
from polyprag.lm.models import load_model

CHILD = Path(__file__).with_name("crash_child.py")
NEW = [{"id": f"new-{i}", "title": f"New {i}", "text": f"Document {i} says the harbour of Tesk opened in 18{i}0."}
       for i in range(3)]
SEEDS = (0, 1, 2)


def child(kill_at: int, argv: list[str], kill_after_s: float | None = None) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process; it kills itself at step `kill_at`, or we kill it after `kill_after_s`."""
    cmd = [sys.executable, str(CHILD), str(kill_at), "-q", *argv]
    if kill_after_s is None:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=kill_after_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    return subprocess.CompletedProcess(cmd, proc.wait())


def killed(step: int, argv: list[str], after: float | None) -> None:
    done = child(step, argv, after)
    if step:  # every run takes the same steps, so the kill must have come
        assert done.returncode == -signal.SIGKILL, (step, done.returncode, (done.stderr or "")[-2000:])


def full_run(argv: list[str]) -> tuple[list[str], float]:
    start = time.monotonic()
    done = child(0, argv)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr.split("STEPS\n", 1)[1].split(), time.monotonic() - start


def kill_points(steps: list[str], seconds: float, seed: int) -> list[tuple[int, float | None]]:
    """Per seed: just before the seed-th rename from the end (seeds 0-2 cover the renames that swap the KB
    itself in), before a random other step, and at a random moment of the run."""
    rng = random.Random(seed)
    renames = [i + 1 for i, s in enumerate(steps) if s in ("replace", "rename")]
    others = [i + 1 for i, s in enumerate(steps) if s not in ("replace", "rename")]
    return [(renames[-1 - seed % len(renames)], None), (rng.choice(others), None), (0, rng.uniform(0.3, 1.0) * seconds)]


def kb_state(folder: Path, model_dir: Path) -> set[str] | None:
    """The document ids of the KB at `folder`, or None when there is none; anything half-written fails here."""
    try:
        kb = KnowledgeBase.load(folder, load_model(str(model_dir)))
    except InputError as e:
        assert "not a polyprag knowledge base" in str(e), str(e)
        return None
    return {d.id for d in kb.docs}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("crash")
    write_jsonl(DOCS, folder / "docs.jsonl")
    (folder / "new.jsonl").write_text("".join(json.dumps(d) + "\n" for d in NEW))
    return folder


def build_args(corpus: Path, model_dir: Path, out: Path) -> list[str]:
    """Each KB folder has its own augmentation cache: every run starts alike and takes the same steps."""
    return ["build", str(corpus / "docs.jsonl"), "--out", str(out), "--model", str(model_dir), "--epochs", "6",
            "--adapters", "4", "--rank", "2", "--augment-cache", f"{out}-cache.jsonl"]


def add_args(corpus: Path, model_dir: Path, kb: Path) -> list[str]:
    return ["add", str(kb), str(corpus / "new.jsonl"), "--model", str(model_dir), "--augment-cache", f"{kb}-cache.jsonl"]


@pytest.fixture(scope="module")
def build_run(corpus, tiny_chat_model_dir):
    """The steps and seconds of a whole build, killed nowhere."""
    return full_run(build_args(corpus, tiny_chat_model_dir, corpus / "reference-build"))


@pytest.fixture(scope="module")
def master(corpus, tiny_chat_model_dir) -> Path:
    return build_kb(tiny_chat_model_dir, corpus / "master")


@pytest.fixture(scope="module")
def add_run(corpus, master, tiny_chat_model_dir):
    reference = corpus / "reference-add"
    shutil.copytree(master, reference)
    return full_run(add_args(corpus, tiny_chat_model_dir, reference))


@pytest.mark.crash
@pytest.mark.parametrize("seed", SEEDS)
def test_a_killed_build_leaves_no_kb_or_the_whole_one_and_resume_finishes_it(seed, corpus, build_run,
                                                                             tiny_chat_model_dir, tmp_path):
    everything = {d.id for d in DOCS}
    for i, (step, after) in enumerate(kill_points(*build_run, seed)):
        out = tmp_path / f"kb-{i}"
        killed(step, build_args(corpus, tiny_chat_model_dir, out), after)
        assert kb_state(out, tiny_chat_model_dir) in (None, everything), (step, after)
        assert cli.main(["-q", *build_args(corpus, tiny_chat_model_dir, out), "--resume"]) == 0, (step, after)
        assert kb_state(out, tiny_chat_model_dir) == everything


@pytest.mark.crash
@pytest.mark.parametrize("seed", SEEDS)
def test_a_killed_add_leaves_the_old_version_or_the_new_one(seed, corpus, master, add_run, tiny_chat_model_dir,
                                                            tmp_path):
    old = {d.id for d in DOCS}
    new = old | {d["id"] for d in NEW}
    for i, (step, after) in enumerate(kill_points(*add_run, seed)):
        kb = tmp_path / f"kb-{i}"
        shutil.copytree(master, kb)
        killed(step, add_args(corpus, tiny_chat_model_dir, kb), after)
        assert kb_state(kb, tiny_chat_model_dir) in (old, new), (step, after)
        assert cli.main(["-q", "versions", str(kb)]) == 0  # the history reads too
