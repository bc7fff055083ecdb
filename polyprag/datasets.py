"""QA datasets → (questions, closed corpus). A closed corpus is every context paragraph of the selected
questions, deduplicated, so BM25 has to find each question's gold paragraphs among the distractors."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import atomic
from .corpus import Document
from .errors import InputError

HOTPOTQA_FILE = "hotpotqa/hotpotqa_dev_distractor_250bridge_250comparison_ircot.jsonl"
DATASETS = ("hotpotqa",)


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list[str]
    gold_doc_ids: list[str] = field(default_factory=list)  # for recall@k; empty when unknown


class _CorpusBuilder:
    """Gives each distinct (title, text) paragraph one id: its title, or title#2... on a clash."""

    def __init__(self) -> None:
        self.docs: list[Document] = []
        self._ids: dict[tuple[str, str], str] = {}
        self._titles: dict[str, int] = {}

    def add(self, title: str, text: str) -> str:
        key = (title.strip(), " ".join(text.split()))
        if key not in self._ids:
            n = self._titles[key[0]] = self._titles.get(key[0], 0) + 1
            base = key[0].replace("/", "_").replace("\\", "_")  # ids never hold path separators ("AC/DC")
            doc_id = base if n == 1 else f"{base}#{n}"
            self._ids[key] = doc_id
            self.docs.append(Document(doc_id, key[0], key[1]))
        return self._ids[key]


def load_dataset(name: str, data_dir: str | Path, n: int) -> tuple[list[Question], list[Document]]:
    if name not in DATASETS:
        raise InputError(f"--dataset {name!r} is not known; choose one of {list(DATASETS)}, "
                         "or pass your own data with --corpus DOCS.jsonl --questions Q.jsonl.")
    return load_hotpotqa(Path(data_dir) / HOTPOTQA_FILE, n)


def load_hotpotqa(path: Path, n: int) -> tuple[list[Question], list[Document]]:
    """IRCoT's HotpotQA dev-distractor file: 250 bridge then 250 comparison questions.

    As PRAG samples per question type, take the first ceil(n/2) bridge and first floor(n/2) comparison rows.
    """
    rows = _read_jsonl(path)
    half = len(rows) // 2
    picked = rows[: (n + 1) // 2] + rows[half: half + n // 2]
    corpus = _CorpusBuilder()
    questions = []
    for row in picked:
        gold = [corpus.add(c["title"], c["paragraph_text"]) for c in row["contexts"] if c["is_supporting"]]
        for c in row["contexts"]:
            corpus.add(c["title"], c["paragraph_text"])
        answers = [s for a in row["answers_objects"] for s in a["spans"]]
        questions.append(Question(row["question_id"], row["question_text"], answers, gold))
    return questions, corpus.docs


def write_questions(questions: list[Question], path: Path) -> None:
    """The `--questions` JSONL format, so an exported dataset round-trips through `load_questions`."""
    lines = [json.dumps({"id": q.id, "question": q.question, "answers": q.answers, "gold_doc_ids": q.gold_doc_ids},
                        ensure_ascii=False) for q in questions]
    atomic.write_text(path, "\n".join(lines) + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise InputError(f"dataset file {path} not found; pass --data-dir pointing at the folder that holds "
                         f"{HOTPOTQA_FILE} (see README: Datasets).")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_questions(path: str | Path) -> list[Question]:
    """A user's questions as JSONL: {"id", "question", "answers": [...], optional "gold_doc_ids": [...]}."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"questions file {path} does not exist; pass a JSONL file of "
                         '{"id", "question", "answers": [...]} objects.')
    questions = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            questions.append(_question_from_line(line, f"{path}:{lineno}"))
    if not questions:
        raise InputError(f"{path} holds no questions; add one JSON object per line.")
    return questions


def _question_from_line(line: str, where: str) -> Question:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not valid JSON ({e.msg}); write one JSON object per line.") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("question"), str) or not obj["question"].strip():
        raise InputError(f'{where}: needs a non-empty string field "question"; got {str(obj)[:80]}.')
    answers = obj.get("answers")
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise InputError(f'{where}: "answers" must be a non-empty list of strings (gold aliases); got {answers!r}.')
    gold = obj.get("gold_doc_ids", [])
    if not isinstance(gold, list):
        raise InputError(f'{where}: "gold_doc_ids" must be a list of document ids; got {gold!r}.')
    return Question(str(obj.get("id", where)), obj["question"], answers, [str(g) for g in gold])
