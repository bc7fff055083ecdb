"""Load a document corpus (JSONL, JSON or a folder of text files), chunk it, write it back.

Every problem with the input raises InputError naming the value, where it is
(`path:line`, `path:item N` or the file) and how to fix it, so the CLI can show
it without a stack trace.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from polyprag import atomic
from polyprag.errors import InputError

log = logging.getLogger("polyprag")

TEXT_SUFFIXES = (".txt", ".md")
MAX_DOC_CHARS = 100_000  # one document is one routing row: a book must be split into passages first
_SENTENCE_END = (".", "!", "?")
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str

    def content(self) -> str:
        """The text a model sees: the title (when there is one) on its own line, then the text."""
        return f"{self.title}\n{self.text}" if self.title else self.text


# A document together with where it came from, so later checks (duplicates) can point at it.
_Located = tuple[Document, str]


# ---------------------------------------------------------------- loading


def load_corpus(path: str | Path) -> list[Document]:
    """Read documents from a .jsonl file, a .json list, or a folder of .txt/.md files."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: corpus path does not exist; check the spelling or create it")
    if path.is_dir():
        located = _load_folder(path)
    elif path.suffix.lower() == ".jsonl":
        located = _load_jsonl(path)
    elif path.suffix.lower() == ".json":
        located = _load_json(path)
    else:
        raise InputError(
            f"{path}: unsupported corpus format {path.suffix or '(no suffix)'!r}; "
            "use a .jsonl file, a .json list, or a folder of .txt/.md files"
        )
    if not located:
        raise InputError(
            f"{path}: the corpus is empty (no documents found); add documents "
            "(JSON objects with 'id' and 'text', or .txt/.md files in the folder)"
        )
    _check_unique_ids(located)
    log.info("loaded %d documents from %s", len(located), path)
    return [doc for doc, _ in located]


def _load_jsonl(path: Path) -> list[_Located]:
    data = _read_bytes(path)
    lines = data.split(b"\n")
    located = []
    offset = 0  # byte offset of the current line, for encoding errors
    for lineno, raw in enumerate(lines, start=1):
        line_start, offset = offset, offset + len(raw) + 1
        if lineno == 1 and raw.startswith(_BOM):
            raw, line_start = raw[len(_BOM) :], line_start + len(_BOM)
        text = _decode(raw, path, line_start, lineno)
        if not text.strip():
            continue  # blank lines (including the one after the final newline)
        where = f"{path}:{lineno}"
        is_last = lineno == len(lines) and not data.endswith(b"\n")
        obj = _parse_json_line(text, where, truncated=is_last)
        located.append((_record_to_document(obj, where), where))
    return located


def _parse_json_line(text: str, where: str, truncated: bool) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        hint = (
            "the file may be truncated (last line has no trailing newline); re-create or re-download it"
            if truncated
            else "fix the JSON on this line (one complete object per line)"
        )
        raise InputError(f"{where}: malformed JSON: {e.msg} at column {e.colno}; {hint}") from None


def _load_json(path: Path) -> list[_Located]:
    try:
        items = json.loads(_decode_file(path))
    except json.JSONDecodeError as e:
        raise InputError(
            f"{path}:{e.lineno}: malformed JSON: {e.msg} at column {e.colno}; fix the JSON syntax"
        ) from None
    if not isinstance(items, list):
        raise InputError(
            f"{path}: expected a JSON list of objects, got {type(items).__name__}; "
            'wrap the documents in [...] like [{"id": "1", "text": "..."}]'
        )
    located = []
    for n, obj in enumerate(items, start=1):
        where = f"{path}:item {n}"
        located.append((_record_to_document(obj, where), where))
    return located


def _load_folder(root: Path) -> list[_Located]:
    files = [
        p
        for p in root.rglob("*")
        if p.is_file()
        and p.suffix.lower() in TEXT_SUFFIXES
        # Skip hidden files and folders (.git, editor backups): they are not documents.
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]
    files.sort(key=lambda p: p.relative_to(root).as_posix())  # deterministic order on every OS
    return [(_file_to_document(p, root), str(p)) for p in files]


def _file_to_document(path: Path, root: Path) -> Document:
    doc_id = path.relative_to(root).with_suffix("").as_posix()
    _check_no_control_chars(doc_id, "document id (from the file name)", str(path))
    content = _decode_file(path)
    title = re.sub(r"[_-]", " ", path.stem)
    text = content.strip()
    if path.suffix.lower() == ".md" and text.startswith("# "):
        heading, _, text = text.partition("\n")
        title, text = heading[2:].strip() or title, text.strip()
    if not text:
        raise InputError(f"{path}: document has no text; add text to the file or remove it")
    return Document(id=doc_id, title=title, text=text)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise InputError(
            f"{path}: cannot read file ({e.strerror}); check that it is a readable file"
        ) from None


def _decode(raw: bytes, path: Path, base_offset: int = 0, lineno: int | None = None) -> str:
    """Decode UTF-8, pointing at the first bad byte (offset counted from the start of the file)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if lineno is None:  # a whole file: count the newlines before the bad byte
            lineno = raw.count(b"\n", 0, e.start) + 1
        raise InputError(
            f"{path}:{lineno}: byte 0x{raw[e.start]:02x} at byte offset {base_offset + e.start} "
            "is not valid UTF-8; re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def _decode_file(path: Path) -> str:
    data = _read_bytes(path)
    body = data.removeprefix(_BOM)  # tolerate the BOM some Windows editors add
    return _decode(body, path, base_offset=len(data) - len(body))


# ---------------------------------------------------------------- validation


def _record_to_document(obj: Any, where: str) -> Document:
    if not isinstance(obj, dict):
        raise InputError(
            f"{where}: expected a JSON object, got {type(obj).__name__} {_short(obj)}; "
            'write each document as {"id": ..., "text": ...}'
        )
    text_key = "contents" if "contents" in obj and "text" not in obj else "text"  # Pyserini's name
    missing = [k for k in ("id", text_key) if k not in obj]
    if missing:
        raise InputError(
            f"{where}: missing field {missing[0]!r} (fields present: {', '.join(map(repr, obj)) or 'none'}); "
            "each document needs 'id' and 'text' (or 'contents')"
        )
    doc_id = validate_id(obj["id"], where)
    text = _validate_str(obj[text_key], text_key, where)
    if not text.strip():
        raise InputError(f"{where}: field {text_key!r} is empty; give the document some text or remove it")
    # Many datasets write a null title; treat it like a missing one.
    title = "" if obj.get("title") is None else _validate_str(obj["title"], "title", where)
    return Document(id=doc_id, title=title, text=text)


MAX_ID_CHARS = 512  # ids name routing rows, chunk ids and lines of `versions`: a key, not content


def validate_id(value: Any, where: str) -> str:
    """The one rule for a document id, from a file or over HTTP: a non-empty string or integer, no path
    separator, control character (terminal escapes) or lone surrogate, at most MAX_ID_CHARS."""
    # bool is an int subclass, but True as an id is surely a mistake.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InputError(
            f"{where}: field 'id' must be a string or integer, got {type(value).__name__} {_short(value)}; "
            'use e.g. "id": "doc-1"'
        )
    doc_id = str(value)
    if not doc_id.strip():
        raise InputError(f"{where}: field 'id' is empty; give every document a unique non-empty id")
    # Ids become file names and chunk ids, so a separator would escape or nest paths.
    if "/" in doc_id or "\\" in doc_id:
        raise InputError(
            f"{where}: id {doc_id!r} contains a path separator ('/' or '\\'); replace it, e.g. with '_'"
        )
    _check_no_control_chars(doc_id, "id", where)
    _check_encodable(doc_id, "id", where)
    if len(doc_id) > MAX_ID_CHARS:
        raise InputError(f"{where}: id of {len(doc_id):,} characters {doc_id[:40]!r}…; ids are at most "
                         f"{MAX_ID_CHARS} characters: use a short key and put the rest in the title or text")
    return doc_id


def _validate_str(value: Any, field: str, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(
            f"{where}: field {field!r} must be a string, got {type(value).__name__} {_short(value)}; "
            f'write it as a JSON string, e.g. "{field}": "..."'
        )
    _check_encodable(value, field, where)
    return value


def _check_no_control_chars(value: str, what: str, where: str) -> None:
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise InputError(f"{where}: {what} {value!r} contains control characters; remove them")


def _check_encodable(value: str, field: str, where: str) -> None:
    # JSON escapes like "\ud800" decode to lone surrogates that cannot be written back as UTF-8.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            f"{where}: field {field!r} contains an invalid \\ud8xx-\\udfxx escape (lone surrogate); "
            "fix or remove that escape"
        ) from None


def _check_unique_ids(located: Iterable[_Located]) -> None:
    first_seen: dict[str, str] = {}
    for doc, where in located:
        if doc.id in first_seen:
            raise InputError(
                f"{where}: duplicate id {doc.id!r}: first seen at {first_seen[doc.id]}, again at {where}; "
                "make every id unique"
            )
        first_seen[doc.id] = where


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_lengths(docs: Iterable[Document], limit: int = MAX_DOC_CHARS) -> None:
    """Refuse documents too long to encode as one: their facts would not fit in a few training samples."""
    for d in docs:
        if len(d.text) > limit:
            raise InputError(f"document {d.id!r} has {len(d.text):,} characters of text, over the {limit:,} one "
                             "document may have; split it into passages (--chunk-words 200, or "
                             "polyprag.text.corpus.chunk_documents) and encode those.")


# ---------------------------------------------------------------- chunking


def chunk_documents(docs: list[Document], words: int = 100) -> list[Document]:
    """Split long documents into passages of about `words` words, ids `f"{id}#{i}"`."""
    if isinstance(words, bool) or not isinstance(words, int) or words < 10:
        raise InputError(
            f"chunk size words={words!r} is too small; use an integer of at least 10 (default 100)"
        )
    out: list[Document] = []
    for doc in docs:
        spans = [m.span() for m in re.finditer(r"\S+", doc.text)]
        if len(spans) <= words:
            out.append(doc)
            continue
        for i, (start, end) in enumerate(_chunk_bounds(doc.text, spans, words)):
            # Slice the original text so paragraph breaks inside a chunk survive.
            text = doc.text[spans[start][0] : spans[end - 1][1]]
            out.append(Document(id=f"{doc.id}#{i}", title=doc.title, text=text))
    _check_unique_ids((d, f"chunk {d.id!r}") for d in out)  # e.g. an input id that already was "x#0"
    return out


def _chunk_bounds(text: str, spans: list[tuple[int, int]], words: int) -> list[tuple[int, int]]:
    """Word-index ranges [start, end) of each chunk."""
    n = len(spans)
    bounds: list[tuple[int, int]] = []
    start = 0
    while n - start > words:
        end = _cut_point(text, spans, start, words)
        bounds.append((start, end))
        start = end
    if start < n:
        if n - start < words / 4 and bounds:
            bounds[-1] = (bounds[-1][0], n)  # a tiny tail reads better glued to its neighbour
        else:
            bounds.append((start, n))
    return bounds


def _cut_point(text: str, spans: list[tuple[int, int]], start: int, words: int) -> int:
    """End of the chunk from `start`: the last sentence end in the window's last 30%, else a hard cut."""
    end = start + words
    for i in range(end - 1, end - 1 - (words * 3) // 10, -1):
        if text[spans[i][1] - 1] in _SENTENCE_END:
            return i + 1
    return end


# ---------------------------------------------------------------- writing


def read_written(path: str | Path) -> list[Document]:
    """Documents from a JSONL file `write_jsonl` wrote, its bytes already verified (a KB's docs.jsonl against
    its checksum): parsed as one JSON array, without the per-line checks a user's file needs (3× faster)."""
    objects = json.loads(b"[" + b",".join(Path(path).read_bytes().splitlines()) + b"]")
    return [Document(o["id"], o["title"], o["text"]) for o in objects]


def write_jsonl(docs: Iterable[Document], path: str | Path) -> None:
    """Write documents as JSONL atomically, so a crash never leaves a half-written corpus."""
    lines = (json.dumps({"id": d.id, "title": d.title, "text": d.text}, ensure_ascii=False) + "\n" for d in docs)
    atomic.write_text(path, "".join(lines))
