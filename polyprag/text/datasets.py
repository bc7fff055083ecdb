"""QA datasets → (questions, closed corpus). A closed corpus is every context paragraph of the selected
questions, deduplicated, so BM25 has to find each question's gold paragraphs among the distractors.

ComplexWebQuestions ships no passages (PRAG retrieves from all of Wikipedia), so the cwq corpus is the union of
the hotpotqa, 2wiki and popqa closed corpora at the same n, and cwq questions have no gold_doc_ids: recall is
unknown there (CORPUS_NOTE says so for tables)."""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import atomic
from .corpus import Document
from .counterfactual import substitutable, substitute
from ..errors import InputError

HOTPOTQA_FILE = "hotpotqa/hotpotqa_dev_distractor_250bridge_250comparison_ircot.jsonl"
TWOWIKI_FILE = "2wikimultihopqa/2wikimultihopqa_dev_random500_origformat.DERIVED.json"
POPQA_FILE = "popqa/popqa_first1000_with_paragraphs.json"
CWQ_FILE = "cwq/cwq_dev_first1000_prag_format.json"
DATASET_FILES = {"hotpotqa": HOTPOTQA_FILE, "2wiki": TWOWIKI_FILE, "popqa": POPQA_FILE, "cwq": CWQ_FILE}
# Counterfactual variants (counterfactual.py): the same rows and splits, answer and bridge entities invented.
COUNTERFACTUAL = {"hotpotqa-cf": "hotpotqa", "2wiki-cf": "2wiki"}
DATASETS = (*DATASET_FILES, *COUNTERFACTUAL)
# Splits of every shared file, per question type (PRAG's groups: HotpotQA's and 2Wiki's types, one group for
# PopQA and CWQ): the last RESERVED_PER_TYPE rows are reserved (never run, tuned on or reported); of the rows
# before them the first half (rounded up) is "test", the headline questions (the first n per type, as PRAG
# samples), and the second half "dev", where every default is chosen.
SPLITS = ("test", "dev")
RESERVED_PER_TYPE = 50
# Type order fixed per dataset (PRAG's), so the same n picks the same questions whichever type a file starts with.
HOTPOTQA_TYPES = ("bridge", "comparison")
TWOWIKI_TYPES = ("bridge_comparison", "comparison", "compositional", "inference")
CORPUS_NOTE = {"cwq": "no passages: corpus is the union of hotpotqa, 2wiki and popqa paragraphs (same n); "
                      "no gold ids, so recall is unknown"}


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list[str]
    gold_doc_ids: list[str] = field(default_factory=list)  # for recall@k; empty when unknown
    qtype: str = ""  # question type ("bridge", "comparison", ...), for per-type results; "" when none


class CorpusBuilder:
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


Convert = Callable[[dict, str, CorpusBuilder], Question]


@dataclass(frozen=True)
class Split:
    """Which rows of a file a loader may pick: `name` in SPLITS; the last `reserved` rows of each type never."""

    name: str = "test"
    reserved: int = RESERVED_PER_TYPE

    def __post_init__(self):
        if self.name not in SPLITS:
            raise InputError(f"--split {self.name!r}; choose from {list(SPLITS)} (the last {RESERVED_PER_TYPE} "
                             "questions of each type are reserved: no split reaches them).")

    def rows(self, groups: list[str]) -> list[int]:
        """The indices of this split's rows, in file order; `groups[i]` is row i's sampling group."""
        by_group: dict[str, list[int]] = {}
        for i, g in enumerate(groups):
            by_group.setdefault(g, []).append(i)
        picked = []
        for rows in by_group.values():
            usable = rows[: max(len(rows) - self.reserved, 0)]
            half = math.ceil(len(usable) / 2)
            picked += usable[:half] if self.name == "test" else usable[half:]
        return sorted(picked)


def load_dataset(name: str, data_dir: str | Path, n: int, path: str | Path | None = None,
                 split: Split = Split()) -> tuple[list[Question], list[Document]]:
    """`path` replaces the default file under `data_dir` (e.g. the full official dev set); its format is detected.
    `split`: which of the file's rows n is taken from (Split; test by default)."""
    if name not in DATASETS:
        raise InputError(f"--dataset {name!r} is not known; choose one of {list(DATASETS)}, "
                         "or pass your own data with --corpus DOCS.jsonl --questions Q.jsonl.")
    base = COUNTERFACTUAL.get(name, name)
    file = Path(path) if path is not None else Path(data_dir) / DATASET_FILES[base]
    if name in COUNTERFACTUAL:
        return load_counterfactual(base, file, n, split)
    if name == "cwq":
        return load_cwq(file, n, data_dir, split)
    return _LOADERS[name](file, n, split)


def load_counterfactual(base: str, path: Path, n: int, split: Split) -> tuple[list[Question], list[Document]]:
    """The substitutable questions of `base`'s split (first n per type) and their corpus, entities invented
    (counterfactual.py)."""
    rows, types, convert, order = multihop_rows(base, path)
    pool = split.rows(types)
    candidates, pool_docs = build_questions(path, base, rows, pool, types, convert)
    text = {d.id: d.text for d in pool_docs}
    texts = list(text.values())
    ok = {i for i, q in zip(pool, candidates) if substitutable(q, [text[g] for g in q.gold_doc_ids], texts)}
    chosen = pick(types, n, split, order, keep=lambda i: i in ok)
    questions, docs = build_questions(path, base, rows, chosen, types, convert)
    return substitute(questions, docs, CorpusBuilder(), texts)


def held_out(name: str, data_dir: str | Path, n: int, m: int, path: str | Path | None = None,
             split: Split = Split()) -> tuple[list[Question], list[Document]]:
    """m questions that are not the n evaluated ones, chosen as load_dataset chooses (per type), with their
    paragraphs that are not also the evaluated ones' (same title and text): training data for a method that learns
    across documents (DyPRAG's translator) without seeing the evaluated ones. On the test split they are the dev
    split's first m (test rows are for evaluation only, and 2Wiki's test split holds 150 questions: 50 beyond
    n = 100); on the dev split, its rows after the first n."""
    if name in COUNTERFACTUAL:  # n and n + m questions make two different invented worlds: no clean hold-out
        raise InputError(f"--dataset {name}: DyPRAG's held-out training questions are not available for the "
                         "counterfactual variants yet; run the dyprag rows on the real dataset.")
    questions, docs = load_dataset(name, data_dir, n, path, split)
    if split.name == "test":
        more, more_docs = load_dataset(name, data_dir, m, path, replace(split, name="dev"))
    else:
        more, more_docs = load_dataset(name, data_dir, n + m, path, split)
    asked, seen = {q.question for q in questions}, {(d.title, d.text) for d in docs}
    return ([q for q in more if q.question not in asked],
            [d for d in more_docs if (d.title, d.text) not in seen])


def pick(types: list[str], n: int, split: Split, order: tuple[str, ...] = (), groups: list[str] | None = None,
         keep: Callable[[int], bool] = lambda i: True) -> list[int]:
    """Row indices: the split's rows (by `groups`, default the types) that `keep` accepts, sampled per type."""
    rows = [i for i in split.rows(groups if groups is not None else types) if keep(i)]
    return [rows[j] for j in sample_per_type([types[i] for i in rows], n, order)]


def sample_per_type(types: list[str], n: int, order: tuple[str, ...] = ()) -> list[int]:
    """Indices of the rows PRAG evaluates: the first rows of each question type, types balanced.

    n is split over the types in `order`, then the rest in order of first appearance (earlier types get the
    remainder); a type with too few rows leaves its share to the others. Indices come grouped by type, in file
    order within a type.
    """
    by_type: dict[str, list[int]] = {t: [] for t in order}
    for i, t in enumerate(types):
        by_type.setdefault(t, []).append(i)
    groups = [g for g in by_type.values() if g]
    return [i for rows, q in zip(groups, _quotas([len(g) for g in groups], n)) for i in rows[:q]]


def _quotas(sizes: list[int], n: int) -> list[int]:
    """An even split of n; a type too small for its share keeps all its rows and the rest is split again."""
    quota, open_ = list(sizes), list(range(len(sizes)))
    left = min(max(n, 0), sum(sizes))
    while open_:
        share, extra = divmod(left, len(open_))
        wants = {i: share + (rank < extra) for rank, i in enumerate(open_)}
        short = [i for i in open_ if sizes[i] < wants[i]]
        if not short:
            for i in open_:
                quota[i] = wants[i]
            break
        left -= sum(sizes[i] for i in short)
        open_ = [i for i in open_ if i not in short]
    return quota


def load_hotpotqa(path: Path, n: int, split: Split = Split()) -> tuple[list[Question], list[Document]]:
    """HotpotQA dev-distractor: IRCoT's JSONL (250 bridge then 250 comparison rows, no type field) or the
    official JSON list. Sampled per type, so n gives the first ceil(n/2) bridge and floor(n/2) comparison rows."""
    rows, types, convert = hotpotqa_rows(path)
    return build_questions(path, "hotpotqa", rows, pick(types, n, split, HOTPOTQA_TYPES), types, convert)


def multihop_rows(name: str, path: Path) -> tuple[list[dict], list[str], Convert, tuple[str, ...]]:
    """A HotpotQA or 2Wiki file's rows, their types, the converter of its format and the type order."""
    if name == "2wiki":
        rows = _read_rows(path, "2wiki")
        return rows, [str(r.get("type") or "") for r in rows], _official_question, TWOWIKI_TYPES
    return (*hotpotqa_rows(path), HOTPOTQA_TYPES)


def hotpotqa_rows(path: Path) -> tuple[list[dict], list[str], Convert]:
    """The file's rows, their types and the converter of its format."""
    rows = _read_rows(path, "hotpotqa")
    if "contexts" in rows[0]:  # IRCoT
        half = len(rows) // 2
        return rows, [str(r.get("type") or ("bridge" if i < half else "comparison")) for i, r in enumerate(rows)], \
            _ircot_question
    return rows, [str(r.get("type") or "") for r in rows], _official_question


def load_2wiki(path: Path, n: int, split: Split = Split()) -> tuple[list[Question], list[Document]]:
    """2WikiMultihopQA dev in its official format, sampled per type (TWOWIKI_TYPES). Lists may be stored as
    Python-literal strings (as in a DERIVED export) or be real lists (the official file); both are read."""
    rows = _read_rows(path, "2wiki")
    types = [str(r.get("type") or "") for r in rows]
    return build_questions(path, "2wiki", rows, pick(types, n, split, TWOWIKI_TYPES), types, _official_question)


def load_popqa(path: Path, n: int, split: Split = Split()) -> tuple[list[Question], list[Document]]:
    """popQA.tsv rows with their `paragraphs` ([{title, text, is_supporting}]).

    PRAG's PopQA loader keeps one "total" group and takes its first n rows, so we do too; the relation (`prop`)
    becomes qtype only for per-type reporting.
    """
    rows = _read_rows(path, "popqa")
    types = [str(r.get("prop") or "") for r in rows]
    return build_questions(path, "popqa", rows, _first(len(rows), n, split), types, _popqa_question)


def _first(n_rows: int, n: int, split: Split) -> list[int]:
    """The first n rows of the split, the file being one group (PRAG's PopQA and CWQ)."""
    return split.rows(["total"] * n_rows)[: max(n, 0)]


def load_cwq(path: Path, n: int, data_dir: str | Path, split: Split = Split()) -> tuple[list[Question], list[Document]]:
    """The first n ComplexWebQuestions rows of the split (PRAG's format or the official release); the corpus is
    borrowed from the other datasets' same split."""
    rows = _read_rows(path, "cwq")
    questions, _ = build_questions(path, "cwq", rows, _first(len(rows), n, split), [""] * len(rows), _cwq_question)
    corpus = CorpusBuilder()
    for name in ("hotpotqa", "2wiki", "popqa"):
        file = Path(data_dir) / DATASET_FILES[name]
        if not file.exists():
            raise InputError(f"--dataset cwq has no passages and borrows the {name} paragraphs, but {file} is not "
                             f"found; pass --data-dir pointing at the folder that holds {DATASET_FILES[name]} "
                             "(see docs/cli.md: Datasets).")
        for doc in _LOADERS[name](file, n, split)[1]:
            corpus.add(doc.title, doc.text)
    return questions, corpus.docs


def build_questions(path: Path, name: str, rows: list[dict], picked: list[int], types: list[str],
                    convert: Convert) -> tuple[list[Question], list[Document]]:
    corpus = CorpusBuilder()
    questions = []
    for i in picked:
        with _row_format(path, i, name):
            questions.append(convert(rows[i], types[i], corpus))
    return _unique_ids(questions), corpus.docs


def _ircot_question(row: dict, qtype: str, corpus: CorpusBuilder) -> Question:
    contexts = _literal(row["contexts"])
    gold = [corpus.add(c["title"], c["paragraph_text"]) for c in contexts if c["is_supporting"]]
    for c in contexts:
        corpus.add(c["title"], c["paragraph_text"])
    answers = [s for a in _literal(row["answers_objects"]) for s in a["spans"]]
    return Question(str(row["question_id"]), row["question_text"], _answers(answers), gold, qtype)


def _official_question(row: dict, qtype: str, corpus: CorpusBuilder) -> Question:
    """HotpotQA's and 2WikiMultihopQA's shared release format. Sentences are joined with spaces, as IRCoT did:
    HotpotQA sentences carry leading spaces of their own, so ''.join would glue the rest ("end.Next")."""
    paragraphs = [(title, " ".join(sents)) for title, sents in _literal(row["context"])]
    support = {title for title, _ in _literal(row["supporting_facts"])}
    if missing := support - {title for title, _ in paragraphs}:
        raise KeyError(f"supporting titles {sorted(missing)} are not in its context")
    gold = [corpus.add(title, text) for title, text in paragraphs if title in support]  # gold first, as IRCoT
    for title, text in paragraphs:
        corpus.add(title, text)
    answers = [row["answer"], *_literal(row.get("answer_aliases", []))]
    return Question(str(row["_id"]), row["question"], _answers(answers), list(dict.fromkeys(gold)), qtype)


def _popqa_question(row: dict, qtype: str, corpus: CorpusBuilder) -> Question:
    paragraphs = _literal(row["paragraphs"])
    gold = [corpus.add(p["title"], p["text"]) for p in paragraphs if p["is_supporting"]]
    for p in paragraphs:
        corpus.add(p["title"], p["text"])
    answers = _literal(row["possible_answers"])  # obj, its aliases, and the subject's other true objects
    return Question(str(row["id"]), row["question"], _answers(answers), list(dict.fromkeys(gold)), qtype)


def _cwq_question(row: dict, qtype: str, corpus: CorpusBuilder) -> Question:
    if "answers" in row:  # the official release: [{answer, aliases}]
        answers = [s for a in row["answers"] for s in [a["answer"], *a.get("aliases", [])]]
    else:  # PRAG's format holds answer + aliases in one list; other exports a single string
        answers = row["answer"] if isinstance(row["answer"], list) else [row["answer"]]
    qid = row["test_id"] if "test_id" in row else row["ID"]
    return Question(str(qid), row["question"], _answers(answers), [], qtype)


def _literal(value):
    """A list stored as JSON or Python-literal text (2Wiki/PopQA exports), or the list itself. Never eval."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return ast.literal_eval(value)


def _answers(values: list) -> list[str]:
    answers = list(dict.fromkeys(str(a).strip() for a in values if a is not None and str(a).strip()))
    if not answers:
        raise ValueError("it has no answer")
    return answers


def _unique_ids(questions: list[Question]) -> list[Question]:
    """Question ids name files and report rows: no path separators, and a repeated id gets #2, #3..."""
    seen: dict[str, int] = {}
    out = []
    for q in questions:
        base = q.id.replace("/", "_").replace("\\", "_")
        k = seen[base] = seen.get(base, 0) + 1
        out.append(replace(q, id=base if k == 1 else f"{base}#{k}"))
    return out


@contextmanager
def _row_format(path: Path, index: int, name: str) -> Iterator[None]:
    """A malformed row names its file and position instead of surfacing as a bare KeyError."""
    try:
        yield
    except (KeyError, IndexError, TypeError, ValueError, SyntaxError, AttributeError) as e:
        raise InputError(f"{path}: row {index} is not a {name} row ({type(e).__name__}: {e}); pass a file in "
                         "the format docs/cli.md: Datasets describes.") from None


_LOADERS: dict[str, Callable[[Path, int, Split], tuple[list[Question], list[Document]]]] = {
    "hotpotqa": load_hotpotqa, "2wiki": load_2wiki, "popqa": load_popqa}


def write_questions(questions: list[Question], path: Path) -> None:
    """The `--questions` JSONL format, so an exported dataset round-trips through `load_questions`."""
    lines = [json.dumps({"id": q.id, "question": q.question, "answers": q.answers, "gold_doc_ids": q.gold_doc_ids,
                         **({"type": q.qtype} if q.qtype else {})}, ensure_ascii=False) for q in questions]
    atomic.write_text(path, "\n".join(lines) + "\n")


def _read_rows(path: Path, name: str) -> list[dict]:
    """A JSON list or JSON lines, told apart by the first character, so either release format can be passed."""
    if not path.exists():
        raise InputError(f"{name} file {path} not found; pass --data-dir pointing at the folder that holds "
                         f"{DATASET_FILES[name]}, or the full dataset's file (see docs/cli.md: Datasets).")
    text = path.read_text(encoding="utf-8")
    try:
        rows = json.loads(text) if text.lstrip().startswith("[") else [
            json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not JSON or JSON lines ({e.msg}, line {e.lineno}); pass the {name} file "
                         "docs/cli.md: Datasets describes.") from None
    if not rows or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"{path} holds no {name} rows (JSON objects); pass the file docs/cli.md: Datasets describes.")
    return rows


def load_questions(path: str | Path) -> list[Question]:
    """A user's questions as JSONL: {"id", "question", "answers": [...], optional "gold_doc_ids": [...], "type"}."""
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
    qtype = obj.get("type", "")
    if not isinstance(qtype, str):
        raise InputError(f'{where}: "type" must be a string (the question type, e.g. "bridge"); got {qtype!r}.')
    return Question(str(obj.get("id", where)), obj["question"], answers, [str(g) for g in gold], qtype)
