"""Specification of corpus loading, validation, chunking and writing."""

import json
import re

import pytest

from polyprag.text.corpus import Document, chunk_documents, load_corpus, write_jsonl
from polyprag.errors import InputError


def write_lines(path, *lines, trailing_newline=True):
    path.write_text("\n".join(lines) + ("\n" if trailing_newline else ""), encoding="utf-8")
    return path


def load_error(path) -> str:
    with pytest.raises(InputError) as info:
        load_corpus(path)
    return str(info.value)


def sentences(n_words, every=None):
    """`n_words` distinct words, with a full stop after every `every`-th word."""
    return " ".join(f"w{i}." if every and (i + 1) % every == 0 else f"w{i}" for i in range(n_words))


# ---------------------------------------------------------------- Document


def test_content_puts_title_on_its_own_line_and_omits_an_empty_title():
    assert Document("1", "Paris", "Capital of France.").content() == "Paris\nCapital of France."
    assert Document("1", "", "Capital of France.").content() == "Capital of France."


# ---------------------------------------------------------------- loaders


def test_jsonl_loads_ids_as_strings_default_title_contents_alias_and_skips_blank_lines(tmp_path):
    path = write_lines(
        tmp_path / "docs.jsonl",
        json.dumps({"id": 7, "title": "Seven", "text": "Lucky number."}),
        "",
        "   ",
        json.dumps({"id": "b", "contents": "Pyserini style."}),
    )
    assert load_corpus(path) == [
        Document("7", "Seven", "Lucky number."),
        Document("b", "", "Pyserini style."),
    ]


def test_json_list_loads_in_order(tmp_path):
    path = tmp_path / "docs.json"
    path.write_text(json.dumps([{"id": "x", "text": "One."}, {"id": 2, "title": "T", "text": "Two."}]))
    assert load_corpus(str(path)) == [Document("x", "", "One."), Document("2", "T", "Two.")]


def test_folder_loads_txt_and_md_recursively_sorted_with_relative_ids(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "zeta_notes.txt").write_text("  Last file.  \n")
    (tmp_path / "sub" / "my-page.md").write_text("# Real Title\n\nBody text.\n")
    (tmp_path / "alpha.md").write_text("No heading here.")
    (tmp_path / "ignored.csv").write_text("a,b")
    assert load_corpus(tmp_path) == [
        Document("alpha", "alpha", "No heading here."),
        Document("sub/my-page", "Real Title", "Body text."),
        Document("zeta_notes", "zeta notes", "Last file."),
    ]


# ---------------------------------------------------------------- path errors


def test_missing_path_is_reported(tmp_path):
    message = load_error(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in message and "does not exist" in message


def test_unsupported_suffix_names_the_supported_formats(tmp_path):
    path = tmp_path / "docs.csv"
    path.write_text("id,text\n1,hello\n")
    message = load_error(path)
    assert "docs.csv" in message and ".jsonl" in message


@pytest.mark.parametrize("name", ["docs.jsonl", "docs.json", "folder"])
def test_empty_corpus_is_an_error(tmp_path, name):
    path = tmp_path / name
    if name == "folder":
        path.mkdir()
    else:
        path.write_text("\n\n" if name.endswith("l") else "[]")
    assert "empty" in load_error(path)


# ---------------------------------------------------------------- JSONL errors


def test_malformed_json_line_gives_line_number_and_parser_message(tmp_path):
    ok = '{"id": 1, "text": "ok"}'
    path = write_lines(tmp_path / "docs.jsonl", ok, "", '{"id": 2, "text": }', ok.replace("1", "3"))
    message = load_error(path)
    assert "docs.jsonl:3" in message and "Expecting value" in message and "fix" in message


def test_truncated_last_line_says_the_file_may_be_truncated(tmp_path):
    path = write_lines(
        tmp_path / "docs.jsonl", '{"id": 1, "text": "ok"}', '{"id": 2, "te', trailing_newline=False
    )
    message = load_error(path)
    assert "docs.jsonl:2" in message and "truncated" in message


def test_line_that_is_not_an_object_is_rejected(tmp_path):
    path = write_lines(tmp_path / "docs.jsonl", '["1", "text"]')
    message = load_error(path)
    assert "docs.jsonl:1" in message and "object" in message and "list" in message


@pytest.mark.parametrize(
    "record, missing",
    [({"text": "no id", "title": "t"}, "'id'"), ({"id": 1, "body": "wrong key"}, "'text'")],
)
def test_missing_field_lists_fields_present(tmp_path, record, missing):
    path = write_lines(tmp_path / "docs.jsonl", json.dumps(record))
    message = load_error(path)
    assert "docs.jsonl:1" in message and f"missing field {missing}" in message
    assert all(repr(key) in message for key in record)


@pytest.mark.parametrize(
    "record, field",
    [
        ({"id": 1, "text": 42}, "text"),
        ({"id": 1, "text": ["a", "b"]}, "text"),
        ({"id": 1, "text": "ok", "title": 3}, "title"),
        ({"id": [1], "text": "ok"}, "id"),
        ({"id": None, "text": "ok"}, "id"),
        ({"id": True, "text": "ok"}, "id"),
    ],
)
def test_wrong_field_type_names_field_and_type(tmp_path, record, field):
    path = write_lines(tmp_path / "docs.jsonl", json.dumps(record))
    message = load_error(path)
    assert "docs.jsonl:1" in message and f"'{field}' must be a string" in message


@pytest.mark.parametrize("text", ["", "  \n\t "])
def test_empty_or_whitespace_text_is_rejected(tmp_path, text):
    path = write_lines(tmp_path / "docs.jsonl", json.dumps({"id": "a", "text": text}))
    message = load_error(path)
    assert "docs.jsonl:1" in message and "empty" in message


def test_duplicate_id_names_both_locations(tmp_path):
    path = write_lines(
        tmp_path / "docs.jsonl",
        json.dumps({"id": "a", "text": "one"}),
        json.dumps({"id": "b", "text": "two"}),
        json.dumps({"id": "a", "text": "three"}),
    )
    message = load_error(path)
    assert "first seen at" in message and "docs.jsonl:1" in message and "docs.jsonl:3" in message
    assert "unique" in message


@pytest.mark.parametrize("bad_id", ["a/b", "a\\b", "a\nb", "tab\there", "nul\x00"])
def test_ids_with_path_separators_or_control_characters_are_rejected(tmp_path, bad_id):
    path = write_lines(tmp_path / "docs.jsonl", json.dumps({"id": bad_id, "text": "ok"}))
    message = load_error(path)
    assert "docs.jsonl:1" in message and ("separator" in message or "control" in message)


def test_non_utf8_jsonl_reports_line_and_byte_offset(tmp_path):
    path = tmp_path / "docs.jsonl"
    first = b'{"id": 1, "text": "ok"}\n'
    path.write_bytes(first + b'{"id": 2, "text": "caf\xe9"}\n')
    message = load_error(path)
    assert "docs.jsonl:2" in message and "UTF-8" in message and "re-encode" in message
    assert f"byte offset {len(first) + 22}" in message


# ---------------------------------------------------------------- JSON and folder errors


def test_json_errors_point_at_the_item(tmp_path):
    path = tmp_path / "docs.json"
    path.write_text(json.dumps([{"id": "a", "text": "ok"}, {"id": "b"}]))
    message = load_error(path)
    assert "docs.json:item 2" in message and "missing field 'text'" in message


def test_json_duplicate_and_separator_errors_use_item_locations(tmp_path):
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps([{"id": "a", "text": "1"}, {"id": "a", "text": "2"}]))
    assert "dup.json:item 1" in load_error(dup) and "dup.json:item 2" in load_error(dup)
    sep = tmp_path / "sep.json"
    sep.write_text(json.dumps([{"id": "x/y", "text": "1"}]))
    assert "sep.json:item 1" in load_error(sep) and "separator" in load_error(sep)


def test_json_that_is_not_a_list_or_is_malformed(tmp_path):
    obj = tmp_path / "obj.json"
    obj.write_text(json.dumps({"id": "a", "text": "ok"}))
    assert "obj.json" in load_error(obj) and "list" in load_error(obj)
    broken = tmp_path / "broken.json"
    broken.write_text('[\n{"id": "a", "text": "ok"},\n{"id": \n]')
    assert "broken.json:4" in load_error(broken) and "malformed JSON" in load_error(broken)


def test_folder_errors_name_the_file(tmp_path):
    (tmp_path / "good.txt").write_text("fine")
    (tmp_path / "empty.txt").write_text("   \n")
    message = load_error(tmp_path)
    assert "empty.txt" in message and "no text" in message

    (tmp_path / "empty.txt").write_bytes(b"line one\nbad \xff byte\n")
    message = load_error(tmp_path)
    assert "empty.txt:2" in message and "byte offset 13" in message and "re-encode" in message


def test_folder_duplicate_ids_from_txt_and_md_with_same_stem(tmp_path):
    (tmp_path / "a.md").write_text("markdown")
    (tmp_path / "a.txt").write_text("text")
    message = load_error(tmp_path)
    assert "duplicate id 'a'" in message and "a.md" in message and "a.txt" in message


# ---------------------------------------------------------------- chunking


def test_short_documents_are_returned_unchanged():
    docs = [Document("a", "T", sentences(100)), Document("b", "", "tiny")]
    assert chunk_documents(docs, words=100) == docs


def test_long_document_gets_stable_ids_and_keeps_title_and_order():
    docs = [Document("x", "Title", sentences(250)), Document("y", "", "short")]
    chunks = chunk_documents(docs, words=100)
    assert [c.id for c in chunks] == ["x#0", "x#1", "x#2", "y"]
    assert all(c.title == "Title" for c in chunks[:3])


@pytest.mark.parametrize("n_words, every", [(1000, None), (1000, 7), (537, 13), (333, 40), (126, 3)])
def test_chunks_are_bounded_and_lose_no_words(n_words, every):
    doc = Document("d", "", sentences(n_words, every))
    chunks = chunk_documents([doc], words=50)
    assert all(len(c.text.split()) <= 1.3 * 50 for c in chunks)
    assert [w for c in chunks for w in c.text.split()] == doc.text.split()


def test_prefers_a_sentence_end_in_the_last_30_percent_of_the_window():
    # Sentence ends after word 80 (inside the last 30% of a 100-word window) and after word 50 (outside).
    words = [f"w{i}" for i in range(200)]
    words[49] += "."
    words[79] += "?"
    chunks = chunk_documents([Document("d", "", " ".join(words))], words=100)
    assert chunks[0].text.split()[-1] == "w79?"


def test_hard_cut_without_sentence_end_and_tiny_tail_is_merged():
    chunks = chunk_documents([Document("d", "", sentences(220))], words=100)
    # 100 + 100 + 20: the 20-word tail is under words/4 and joins the previous chunk.
    assert [len(c.text.split()) for c in chunks] == [100, 120]


def test_chunk_text_keeps_paragraph_breaks():
    text = sentences(60, every=10) + "\n\n" + sentences(60, every=10)
    chunks = chunk_documents([Document("d", "", text)], words=50)
    assert any("\n\n" in c.text for c in chunks)


def test_chunking_is_deterministic():
    docs = [Document(str(i), "", sentences(300 + i * 17, every=9)) for i in range(5)]
    assert chunk_documents(docs, words=40) == chunk_documents(list(docs), words=40)


def test_chunk_size_below_ten_is_rejected():
    with pytest.raises(InputError, match="at least 10"):
        chunk_documents([Document("a", "", "text")], words=9)


def test_chunk_ids_clashing_with_existing_ids_are_rejected():
    docs = [Document("x", "", sentences(300)), Document("x#1", "", "already taken")]
    with pytest.raises(InputError, match=re.escape("duplicate id 'x#1'")):
        chunk_documents(docs, words=100)


# ---------------------------------------------------------------- writing


def test_write_jsonl_round_trips_through_load_corpus(tmp_path):
    docs = [Document("1", "Été", "Ünïcödé text — kept as is."), Document("x#0", "", "one\ntwo")]
    path = tmp_path / "out" / "docs.jsonl"
    write_jsonl(docs, path)
    assert load_corpus(path) == docs
    assert "Été" in path.read_text(encoding="utf-8")  # not \u-escaped
    assert [p.name for p in path.parent.iterdir()] == ["docs.jsonl"]  # no temp file left behind


def test_write_jsonl_replaces_existing_file(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("old junk\n" * 100)
    write_jsonl([Document("a", "", "new")], path)
    assert path.read_text(encoding="utf-8") == '{"id": "a", "title": "", "text": "new"}\n'


def test_a_written_corpus_reads_back_fast_as_the_checked_reader_reads_it(tmp_path):
    from polyprag.text.corpus import read_written

    docs = [Document("a", "", "plain"), Document("bü", "Títle \"quoted\"", "line\nbreak, \u2028 and ✓"), Document("3", "T", "x")]
    write_jsonl(docs, tmp_path / "docs.jsonl")
    assert read_written(tmp_path / "docs.jsonl") == load_corpus(tmp_path / "docs.jsonl") == docs
