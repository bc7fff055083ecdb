"""BM25 retrieval: ranking agrees with a brute-force BM25, save/load round trip, clear errors."""

import math
from collections import Counter

import pytest

from polyprag.text.corpus import Document
from polyprag.errors import InputError
from polyprag.text.retrieve import BM25Index, tokenize

DOCS = [
    Document("d0", "Marlow Bridge", "A stone arch bridge over the river Tesk, finished in 1862 by Ada Feld."),
    Document("d1", "Ada Feld", "Ada Feld was an engineer who designed bridges and canals in Velmark."),
    Document("d2", "Velmark", "Velmark is a town on the river Tesk known for its canals and mills."),
    Document("d3", "Orrin Mill", "The Orrin Mill ground grain for Velmark until a fire in 1901."),
    Document("d4", "Tesk", "The Tesk is a slow river; its name means grey water in old Velmarkish."),
    Document("d5", "Glass harp", "A glass harp is played by rubbing wet fingers on glasses of water."),
]


def brute_force_bm25(docs, query, k1=1.5, b=0.75):
    """Lucene BM25 written out by hand: idf = ln(1 + (N - df + .5) / (df + .5))."""
    corpus = tokenize([d.content() for d in docs])
    n, avgdl = len(corpus), sum(map(len, corpus)) / len(corpus)
    df = Counter(t for toks in corpus for t in set(toks))
    scores = []
    for toks in corpus:
        tf = Counter(toks)
        s = 0.0
        for q in tokenize([query])[0]:
            if tf[q]:
                idf = math.log(1 + (n - df[q] + 0.5) / (df[q] + 0.5))
                s += idf * tf[q] / (tf[q] + k1 * (1 - b + b * len(toks) / avgdl))
        scores.append(s)
    return scores


@pytest.mark.parametrize("query", ["river Tesk canals", "Who built the Marlow Bridge?", "fire at the mill",
                                   "grey water name", "glass fingers", "Velmark engineer 1862"])
def test_ranking_matches_brute_force(query):
    expected = brute_force_bm25(DOCS, query)
    hits = BM25Index.build(DOCS).search([query], k=len(DOCS))[0]
    got = {h.doc_id: h.score for h in hits}
    for doc, score in zip(DOCS, expected):
        assert got.get(doc.id, 0.0) == pytest.approx(score, rel=1e-4, abs=1e-6)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_top_k_is_best_first_and_clamped():
    hits = BM25Index.build(DOCS).search(["Marlow Bridge Ada Feld"], k=50)[0]
    assert hits[0].doc_id == "d0"
    assert len(hits) <= len(DOCS)


def test_query_of_unknown_words_has_no_hits():
    assert BM25Index.build(DOCS).search(["zzz qqq", "the a of"], k=3) == [[], []]


def test_save_load_round_trip(tmp_path):
    index = BM25Index.build(DOCS)
    index.save(tmp_path / "index")
    loaded = BM25Index.load(tmp_path / "index")
    queries = ["river Tesk", "grain fire 1901", "glass harp"]
    assert loaded.search(queries, k=3) == index.search(queries, k=3)
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "index").iterdir())


def test_save_replaces_an_existing_index(tmp_path):
    BM25Index.build(DOCS[:2]).save(tmp_path / "index")
    BM25Index.build(DOCS).save(tmp_path / "index")
    assert BM25Index.load(tmp_path / "index").doc_ids == [d.id for d in DOCS]
    assert [p.name for p in tmp_path.iterdir()] == ["index"]  # no temp folder left behind


def test_bad_k_and_empty_corpus_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="k = 0"):
        BM25Index.build(DOCS).search(["river"], k=0)
    with pytest.raises(InputError, match="empty corpus"):
        BM25Index.build([])
    with pytest.raises(InputError, match="not a polyprag BM25 index"):
        BM25Index.load(tmp_path)


def test_top_k_is_the_stable_sorts_first_k_positive_ties_included():
    import numpy as np

    from polyprag.text.retrieve import top_k

    rng = np.random.default_rng(0)
    for n, k in [(1000, 3), (50, 10), (5, 5), (5, 9), (200, 1), (3, 2)]:
        scores = rng.integers(0, 4, n).astype(np.float32)  # many ties
        stable = [i for i in np.argsort(-scores, kind="stable") if scores[i] > 0][:k]
        assert top_k(scores, k).tolist() == stable
