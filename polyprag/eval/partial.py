"""A method's answers kept chunk by chunk (OUT/partial/METHOD.json), so that a run resumes from committed files.

PRAG's rows train one LoRA per document before answering: at the protocol's 4 epochs that is hours on a 2-core
machine, longer than a machine may be held, and the adapters (~1.5 MB per document) are not worth committing. The
answers are small: a method answers its questions in chunks, each chunk's documents trained first, and after each
chunk its answers, latencies and clock are saved here (`benchmarks/results_copy.sh collect` copies them). A resume on
any machine starts at the first unanswered question; the documents it needs are trained again if their adapters
are gone (each document's LoRA is seeded by its index alone, so the answers are the same).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from .. import atomic
from ..errors import InputError
from ..lm.answer import Answer

CHUNK = 10  # questions per chunk: at most ~10 minutes of PRAG training lost when a machine is taken back


@dataclass
class Partial:
    """The answers so far (in question order) and the clock they took, this process's and earlier ones'."""

    path: Path
    tree: str | None = None  # the package tree that answered (evaluate.code_version): one per row
    ids: list[str] = field(default_factory=list)  # the question each answer is for
    answers: list[Answer] = field(default_factory=list)
    timings: list[float] = field(default_factory=list)  # per-question latency, as the readers measure it
    clock: dict[str, float] = field(default_factory=lambda: {"wall": 0.0, "cpu": 0.0, "encode": 0.0})
    earlier: dict[str, float] = field(init=False)  # the clock as loaded: what earlier processes spent

    def __post_init__(self):
        self.earlier = dict(self.clock)

    @classmethod
    def load(cls, path: str | Path, question_ids: list[str], tree: str | None) -> Partial:
        """The saved answers of `path` (none: a fresh start); refused if they were for other questions or by
        another package tree (`tree`: this process's), since a row names one version of the code."""
        path = Path(path)
        if not path.exists():
            return cls(path, tree)
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved["ids"] != question_ids[:len(saved["ids"])]:
            raise InputError(f"{path} holds answers to other questions than this run's; delete it to answer again.")
        if saved["tree"] != tree:
            raise InputError(f"{path} holds answers given by another version of polyprag (package tree "
                             f"{saved['tree']}, now {tree}); resume from a checkout of that version (a worktree "
                             "pinned at its commit), or delete the file to answer every question again.")
        return cls(path, tree, saved["ids"], [Answer(**a) for a in saved["answers"]], saved["timings"], saved["clock"])

    def chunks(self, question_ids: list[str]) -> list[list[int]]:
        """The indices of the questions still to answer, CHUNK at a time."""
        todo = list(range(len(self.ids), len(question_ids)))
        return [todo[i:i + CHUNK] for i in range(0, len(todo), CHUNK)]

    def add(self, ids: list[str], answers: list[Answer], timings: list[float], wall: float, cpu: float,
            encode: float) -> None:
        """One chunk answered: its answers and the seconds it took (wall, process CPU, the wall spent training)."""
        self.ids += ids
        self.answers += answers
        self.timings += timings
        for key, value in (("wall", wall), ("cpu", cpu), ("encode", encode)):
            self.clock[key] += value
        kept = [{k: v for k, v in asdict(a).items() if k != "passages"} for a in self.answers]  # passages: not scored
        atomic.write_text(self.path, json.dumps({"tree": self.tree, "ids": self.ids, "answers": kept, "timings": self.timings,
                                                 "clock": self.clock}, ensure_ascii=False))


def answer_together(parts: dict[str, Partial], question_ids: list[str],
                    prepare: Callable[[dict[str, list[int]]], object],
                    answer: Callable[[str, list[int], list[float]], list[Answer]], progress: bool = True,
                    desc: str = "") -> None:
    """Answer every question that the rows `parts` (by name: rows that answer with one set of adapters, such as
    prag, prag-combine and prag-shuffled) have not, a chunk at a time: the rows furthest behind take their next
    chunk together, `prepare({row: chunk})` trains what all of them need, then `answer(row, chunk, timings)` for
    each, each saved. A family of rows so trains a document once per machine, not once per row; each row's clock
    counts the training its chunk waited for (as encoding) and its own answering."""
    n = len(question_ids)
    bar = tqdm(total=n * len(parts), initial=sum(len(p.ids) for p in parts.values()), desc=desc, unit="q",
               disable=not progress)
    while todo := {name: p.chunks(question_ids)[0] for name, p in parts.items() if len(p.ids) < n}:
        first = min(chunk[0] for chunk in todo.values())
        step = {name: chunk for name, chunk in todo.items() if chunk[0] == first}
        wall, cpu = time.perf_counter(), time.process_time()
        prepare(step)
        encode, encode_cpu = time.perf_counter() - wall, time.process_time() - cpu
        for name, chunk in step.items():
            wall, cpu, timings = time.perf_counter(), time.process_time(), []
            answers = answer(name, chunk, timings)
            parts[name].add([question_ids[i] for i in chunk], answers, timings, encode + time.perf_counter() - wall,
                            encode_cpu + time.process_time() - cpu, encode)
            bar.update(len(chunk))
    bar.close()
