"""Counterfactual datasets: answers and bridge entities invented consistently, the gold answer with them."""

from pathlib import Path

import pytest

from polyprag.text.corpus import Document
from polyprag.text.counterfactual import bridge_entity, invent, substitutable, substitute
from polyprag.text.datasets import HOTPOTQA_FILE, CorpusBuilder, Question, load_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_invented_entities_keep_the_shape_and_are_the_same_each_time():
    assert invent("Marie Curie") == invent("Marie Curie") != "Marie Curie"
    name = invent("Marie Curie").split()
    assert len(name) == 2 and all(w[0].isupper() and w[1:].islower() for w in name)
    year = int(invent("1867"))
    assert year != 1867 and 1800 <= year <= 1930
    date = invent("7 November 1867").split()
    assert date[1] == "November" and date[0].isdigit() and date[2].isdigit() and date[2] != "1867"
    assert invent("3,677 seated").endswith(" seated") and invent("the United Kingdom").startswith("the ")


def test_invented_names_are_ordinary_name_words_of_the_same_kind_and_years_stay_in_the_past():
    from polyprag.text.counterfactual import _NAME_WORDS, LAST_YEAR

    for original in ("Chief of Protocol", "Marie Curie", "Greenwich Village, New York City", "The Beatles"):
        words = [w for w in invent(original).replace(",", "").split() if w not in ("of", "Chief", "Village", "City",
                                                                                   "The")]
        assert words and all(w in _NAME_WORDS for w in words), invent(original)  # a reader can copy them
    assert invent("Chief of Protocol").startswith("Chief of ") and invent("The Beatles").startswith("The ")
    assert invent("Texas Tech University").endswith(" University") and invent("Lush Ltd.").endswith(" Ltd.")
    assert all(int(invent(str(y), a)) <= LAST_YEAR for y in range(1990, 2018) for a in range(5))
    for a in range(20):  # every year of one entity moves by one offset: a span stays a span, in the past
        start, end = map(int, invent("from 1969 to 2015", a).split()[1::2])
        assert end - start == 2015 - 1969 and end <= LAST_YEAR
        assert all(1000 <= int(invent(y, a)) <= LAST_YEAR for y in ("1000", "1012", "2016", "2030", "2100"))
        start, end = map(int, invent("1010 to 2010", a).split()[::2])
        assert end - start == 1000 and start >= 1000 and end <= LAST_YEAR
    assert invent("1st Viscount Combermere").split()[:2] in ([f"{n}{s}", "Viscount"] for n in range(2, 29) for s in
                                                         ("nd", "rd", "th", "st"))
    assert all(invent(f"{n}th Avenue", a).split()[0][-2:] in ("st", "nd", "rd", "th") and
               invent(f"{n}th Avenue", a).split()[0][:-2].isdigit() for n in (5, 12) for a in range(10))
    assert invent("SF9").isupper() or any(c.isdigit() for c in invent("SF9"))


def test_two_entities_never_share_an_invention_nor_take_a_word_of_the_corpus():
    docs = [Document(f"d{i}", f"Topic {i}", f"Person {i} met Fisher in Glenn {i}.") for i in range(60)]
    questions = [Question(f"q{i}", f"Whom did the person of topic {i} meet?", [f"Glenn {i}"], [f"d{i}"], "bridge")
                 for i in range(60)]
    kept, new = substitute(questions, docs, CorpusBuilder())
    answers = [q.answers[0] for q in kept]
    assert len(kept) == 60 and len(set(answers)) == 60  # one invention per entity
    assert not any("Fisher" in a for a in answers)  # "Fisher" stands in the corpus already: never an invention


def test_substitution_is_one_world_across_documents_and_questions():
    docs = [Document("Ada", "Ada", "Ada worked with Charles Babbage in London."),
            Document("Engine", "Analytical Engine", "The engine was designed by Charles Babbage."),
            Document("Other", "Other", "London is a city.")]
    q1 = Question("q1", "Who designed the machine Ada worked on?", ["Charles Babbage", "Babbage"], ["Ada", "Engine"],
                  "bridge")
    q2 = Question("q2", "In which city did Charles Babbage work with Ada?", ["London"], ["Ada"], "bridge")
    (n1, n2), new = substitute([q1, q2], docs, CorpusBuilder())
    babbage, london = invent("Charles Babbage"), invent("London")
    assert n1.answers == [babbage] and n2.answers == [london]
    assert n2.question == f"In which city did {babbage} work with Ada?"  # another question's answer, renamed
    texts = {d.text for d in new}
    assert f"Ada worked with {babbage} in {london}." in texts and f"{london} is a city." in texts
    assert not any("Babbage" in t or "London" in t for t in texts)
    bridge = invent("Analytical Engine")  # the gold title the question does not name
    assert {d.title for d in new} == {"Ada", bridge, "Other"} and n1.gold_doc_ids == ["Ada", bridge]


def test_only_named_or_numeric_answers_outside_the_question_are_substituted():
    gold = ["Ada was born in 1815 in London; she was a mathematician."]
    assert substitutable(Question("a", "When was Ada born?", ["1815"]), gold)
    assert not substitutable(Question("b", "Was Ada born in London?", ["yes"]), gold)
    assert not substitutable(Question("c", "What was Ada?", ["mathematician"]), gold)  # a common noun
    assert not substitutable(Question("d", "Was Ada born in London or Paris?", ["London"]), gold)  # named
    full = ["Augusta Ada King was born in 1815 at 712 Piccadilly Street."]  # the answer in fuller form than asked
    assert not substitutable(Question("d2", "Who was born first, Ada King or Mary Somerville?", ["Augusta Ada King"]), full)
    assert not substitutable(Question("d3", "Which is older, 712 Piccadilly or Big Ben?", ["712 Piccadilly Street"]), full)
    assert substitutable(Question("d4", "Where was the first programmer born?", ["712 Piccadilly Street"]), full)
    assert not substitutable(Question("e", "Where did Ada die?", ["Marylebone"]), gold)  # not in the gold
    many = [f"An American film of {i}." for i in range(60)] + gold  # a nationality is vocabulary, not an entity
    assert not substitutable(Question("h", "Of what nationality was the film?", ["American"]), many, many)
    assert substitutable(Question("i", "When was the film made?", ["1815"]), many, many)  # a number is renamed
    assert bridge_entity(Question("f", "Who was Ada Lovelace's father?", ["Byron"]),
                         [Document("Ada", "Ada Lovelace", "x"), Document("B", "Lord Byron (poet)", "y")]) == "Lord Byron"
    assert bridge_entity(Question("g", "Who was Ada's father?", ["Byron"]),
                         [Document("Ada", "Ada Lovelace", "x"), Document("B", "Lord Byron (poet)", "y")]) is None  # 2


@pytest.mark.skipif(not (SHARED / HOTPOTQA_FILE).exists(), reason=f"needs ../shared/data ({SHARED}); CI has it")
def test_real_counterfactual_hotpotqa_answers_are_invented_and_in_the_gold_paragraphs():
    questions, docs = load_dataset("hotpotqa-cf", SHARED, n=100)
    real = {q.id: q for q in load_dataset("hotpotqa", SHARED, n=400)[0]}
    by_id = {d.id: d for d in docs}
    # the test split's rows only: 85 of them substitutable since version 4 (an either-or question names its answer)
    assert len(questions) == 85 and all(q.id in real for q in questions)
    for q in questions:
        assert q.answers != real[q.id].answers
        assert any(q.answers[0] in by_id[g].text for g in q.gold_doc_ids)


def test_a_question_whose_answer_is_renamed_away_by_a_longer_one_is_dropped():
    docs = [Document("a", "Film A", "Film A was shot in New York City."),
            Document("b", "Film B", "Film B is set in New York City, a city in New York.")]
    q1 = Question("q1", "Where was Film A shot?", ["New York"], ["a"])  # only inside the longer answer in "a"
    q2 = Question("q2", "Where is Film B set?", ["New York City"], ["b"])
    kept, _ = substitute([q1, q2], docs, CorpusBuilder())
    assert [q.id for q in kept] == ["q2"]


def test_a_bridge_common_in_the_split_keeps_its_name_and_no_two_entities_share_an_invention():
    docs = [Document("a", "Ada", "Ada wrote the notes on the Analytical Engine."),
            Document("e", "Analytical Engine", "The Analytical Engine was designed in 1837.")]
    q = Question("q", "When was the machine Ada wrote about designed?", ["1837"], ["a", "e"], "bridge")
    rare = [d.text for d in docs] + [f"A paper, number {i}." for i in range(200)]
    (renamed,), new = substitute([q], docs, CorpusBuilder(), rare)  # in 2 of the split's 202 paragraphs: renamed
    assert "Analytical Engine" not in renamed.question + " ".join(d.text for d in new)
    split = [d.text for d in docs] + [f"The Analytical Engine, paper {i}." for i in range(60)]
    (kept,), new = substitute([q], docs, CorpusBuilder(), split)  # in 62 of 62: vocabulary, kept
    assert "Analytical Engine" in new[1].text and kept.answers != ["1837"]
    docs = [Document(f"d{i}", f"Walk {i}", f"The walk is {i} km long.") for i in range(1, 31)]
    questions = [Question(f"q{i}", f"How long is walk {i}?", [f"{i} km"], [f"d{i}"]) for i in range(1, 31)]
    kept, _ = substitute(questions, docs, CorpusBuilder())  # 30 lengths, 28 small numbers to draw from
    answers = [q.answers[0] for q in kept]
    assert 0 < len(kept) < 30 and len(set(answers)) == len(answers)  # the last ones dropped, never shared
