"""Specification of the rule-based (LLM-free) PRAG augmenter: sentences, spans, QA pairs, JSON cache."""

import json
import re
from pathlib import Path

import pytest

from polyprag.text.augment_rules import Augmentation, QAPair, from_json, rule_augment, to_json
from polyprag.text.spans import extract_spans, split_sentences
from polyprag.text.corpus import Document, load_corpus
from polyprag.errors import InputError

SAMPLE = Path(__file__).resolve().parent.parent / "polyprag" / "data" / "sample"
BRIDGE = Document(
    "marlow",
    "Marlow Bridge",
    "Marlow Bridge is a stone arch bridge over the river Tesk. It was finished in 1862 by the "
    "engineer Ada Feld. The bridge is 214 metres long and has 9 arches. It was built of grey "
    "granite quarried near Velmark. In 1927 a flood damaged two piers. The bridge carried "
    "12,400 vehicles a day in 2019. A toll was charged until 1888. Dr. J. Pruitt restored it "
    "between 1990 and 1994. The parapet is made of iron. Its lamps were lit by gas until 1931.",
)


@pytest.fixture(scope="module")
def sample_docs():
    return load_corpus(SAMPLE / "docs.jsonl")


def kinds_and_texts(sentence, title=""):
    return [(s.kind, s.text) for s in extract_spans(sentence, title)]


def is_cloze(pair):
    return pair.question.endswith("What fills the blank?")


# ---------------------------------------------------------------- sentences


def test_initials_abbreviations_and_decimals_do_not_split_sentences():
    text = ("J. R. Tolkien taught at St. Giles with Dr. Watson. It rained 3.5 mm. "
            "The U.S. army left! Did it? Yes.")
    assert split_sentences(text) == [
        "J. R. Tolkien taught at St. Giles with Dr. Watson.",
        "It rained 3.5 mm.",
        "The U.S. army left!",
        "Did it?",
        "Yes.",
    ]


def test_sentences_are_verbatim_substrings_including_after_closing_quotes():
    text = 'He said "no." She left.\n\nA new paragraph without a full stop\n\nLast one.'
    parts = split_sentences(text)
    assert parts == ['He said "no."', "She left.", "A new paragraph without a full stop", "Last one."]
    assert all(p in text for p in parts)


# ---------------------------------------------------------------- spans


def test_years_are_found_but_not_inside_larger_numbers_or_decades():
    found = kinds_and_texts("It opened in 1862, closed in 2019, had 1,150 staff in the 1960s and (1871–1939).")
    years = [t for k, t in found if k == "year"]
    assert years == ["1862", "2019", "1871", "1939"]


def test_full_dates_win_over_the_years_inside_them():
    found = kinds_and_texts("It was lit on 1 March 1849, again on March 12, 1887, and in June 1911.")
    assert [t for k, t in found if k == "date"] == ["1 March 1849", "March 12, 1887", "June 1911"]
    assert not [t for k, t in found if k == "year"]


def test_numbers_with_units_keep_the_unit_and_counts_give_the_bare_number():
    found = kinds_and_texts(
        "The river flows for 214 kilometres, its stadium holds 12,400 spectators, it weighs "
        "4.2 tonnes, it covers 46 square kilometres and about 3.5 million people and eleven bridges."
    )
    assert ("measure", "214 kilometres") in found
    assert ("measure", "4.2 tonnes") in found
    assert ("measure", "46 square kilometres") in found
    assert ("count", "12,400") in found  # the question asks "how many spectators"
    assert ("count", "3.5 million") in found
    assert ("count", "eleven") in found


def test_capitalised_names_allow_connectors_but_skip_the_sentence_start():
    found = kinds_and_texts("Later the painter Jean de la Fontaine met Ludwig van Beethoven at the "
                            "University of Maddervale in June.")
    names = [t for k, t in found if k == "name"]
    assert names == ["Jean de la Fontaine", "Ludwig van Beethoven", "University of Maddervale"]


def test_sentence_start_name_only_when_it_is_the_title():
    assert kinds_and_texts("Barges carried timber.") == [("material", "timber")]
    assert ("name", "Marlow Bridge") in kinds_and_texts("Marlow Bridge spans the Tesk.", "Marlow Bridge")


def test_colours_and_materials_from_the_word_lists():
    found = kinds_and_texts("Its roofs are green slate, its flowers pale violet, its crown copper-red "
                            "and its hull teak.")
    assert ("colour", "green") in found and ("material", "slate") in found
    assert ("colour", "pale violet") in found and ("colour", "copper-red") in found
    assert ("material", "teak") in found


# ---------------------------------------------------------------- QA pairs


def test_same_document_gives_the_same_augmentation():
    assert rule_augment(BRIDGE) == rule_augment(BRIDGE)
    assert rule_augment(BRIDGE, max_qa=8) == rule_augment(BRIDGE, max_qa=8)


def test_templates_turn_cues_into_wh_questions():
    qa = {p.answer: p.question for p in rule_augment(BRIDGE, max_qa=30).qa}
    assert qa["1862"] == "In what year was Marlow Bridge finished by the engineer Ada Feld?"
    assert qa["Ada Feld"] == "Which engineer finished Marlow Bridge in 1862?"
    assert qa["214 metres"] == "Marlow Bridge is how many metres long?"
    assert qa["granite"] == "Marlow Bridge was built of grey what stone quarried near Velmark?"
    born = rule_augment(Document("x", "Tamsin Orlebar", "She was born in Quellmoor."))
    assert born.qa[0] == QAPair("Where was Tamsin Orlebar born?", "Quellmoor", "She was born in Quellmoor.")


def test_the_topic_noun_is_read_from_the_document_not_from_a_word_list():
    # "zither" and "gazebo" are in no list of the augmenter: the opening definition names the topic's noun.
    harp = Document("h", "Tessaly Zither", "The Tessaly Zither is a plucked zither first built in 1788. "
                    "The zither has 31 strings of brass.")
    assert "Tessaly Zither has how many strings of brass?" in [p.question for p in rule_augment(harp, max_qa=8).qa]
    folly = Document("f", "Orrin Folly (gazebo)", "Orrin Folly stands in a walled garden. "
                     "The gazebo was painted in 1902.")
    assert "In what year was Orrin Folly painted?" in [p.question for p in rule_augment(folly, max_qa=8).qa]


def test_a_name_holding_a_word_the_document_uses_in_lower_case_is_a_thing_not_a_person():
    fair = Document("f", "Quarrow", "The moot moved to Quarrow. It is held at Wenlow Goose Moot.")
    person = Document("p", "Quarrow", "The moot moved to Quarrow. It is run by Wenlow Gosse.")
    assert [p.question for p in rule_augment(fair, max_qa=8).qa if p.answer == "Wenlow Goose Moot"] == [
        "Quarrow is held where?"]
    assert "Quarrow is run by whom?" in [p.question for p in rule_augment(person, max_qa=8).qa]


def test_answers_are_verbatim_and_questions_end_with_a_question_mark_without_the_answer(sample_docs):
    for doc in sample_docs + [BRIDGE]:
        for pair in rule_augment(doc, max_qa=50).qa:
            assert pair.answer and pair.answer in doc.text, (doc.id, pair)
            assert pair.full_answer in doc.text and pair.answer in pair.full_answer
            assert pair.question.endswith("?"), pair
            # A cloze blanks the answer out; no question may also give it away elsewhere.
            assert not re.search(rf"(?<!\w){re.escape(pair.answer)}(?!\w)", pair.question, re.I), pair
            if is_cloze(pair):
                assert "___" in pair.question


def test_n_qa_is_respected_and_max_qa_gives_more_pairs_on_a_long_document():
    assert len(rule_augment(BRIDGE).qa) == 3
    assert len(rule_augment(BRIDGE, n_qa=1).qa) == 1
    many = rule_augment(BRIDGE, max_qa=12).qa
    assert len(many) == 12
    assert len(rule_augment(BRIDGE, max_qa=1000).qa) > 12  # all candidates, not padded
    assert len({p.full_answer for p in rule_augment(BRIDGE, n_qa=5).qa}) == 5  # different sentences first


def test_a_document_without_spans_still_gets_one_cloze_pair():
    aug = rule_augment(Document("w", "", "quiet words only here"))
    # The longest word, the first one on ties.
    assert aug.qa == (QAPair("___ words only here. What fills the blank?", "quiet", "quiet words only here"),)
    titled = rule_augment(Document("z", "Zed", "Zed is here."))
    assert titled.qa[0].answer == "Zed" and "___" in titled.qa[0].question


@pytest.mark.parametrize("bad", [{"n_qa": 0}, {"n_qa": "3"}, {"max_qa": 0}, {"n_qa": True}])
def test_bad_counts_are_input_errors(bad):
    with pytest.raises(InputError):
        rule_augment(BRIDGE, **bad)


def test_rewrite_moves_the_second_sentence_first_and_resolves_its_pronoun():
    rewrite = rule_augment(BRIDGE).rewrite
    assert rewrite.startswith("About Marlow Bridge: Marlow Bridge was finished in 1862 by the engineer Ada Feld.")
    assert rewrite.endswith("Marlow Bridge is a stone arch bridge over the river Tesk.")
    assert rule_augment(Document("y", "", "One sentence.")).rewrite == "One sentence."


# ---------------------------------------------------------------- sample corpus


def test_every_sample_document_yields_three_pairs(sample_docs):
    assert len(sample_docs) == 30
    for doc in sample_docs:
        aug = rule_augment(doc)
        assert aug.doc_id == doc.id and aug.source == "rules-v1"
        assert len(aug.qa) == 3, doc.id
        assert len({p.answer for p in aug.qa}) == 3


def test_sample_questions_gold_answers_are_covered_by_the_gold_docs_pairs(sample_docs):
    by_id = {doc.id: doc for doc in sample_docs}
    questions = [json.loads(line) for line in (SAMPLE / "questions.jsonl").read_text().splitlines()]
    assert len(questions) == 60
    coverage = {}
    for label, kwargs in (("n_qa=3", {}), ("max_qa=12", {"max_qa": 12})):
        augs = {doc_id: rule_augment(doc, **kwargs) for doc_id, doc in by_id.items()}
        hits = sum(
            any(p.answer.strip().lower() == q["answers"][0].strip().lower() for p in augs[q["gold_doc_ids"][0]].qa)
            for q in questions
        )
        coverage[label] = hits / len(questions)
    print(f"\ngold-answer coverage of sample questions: {coverage}")
    assert coverage["max_qa=12"] >= 0.5
    assert coverage["max_qa=12"] > coverage["n_qa=3"]


# ---------------------------------------------------------------- JSON cache


def test_json_round_trip_survives_a_jsonl_line():
    aug = rule_augment(BRIDGE, max_qa=5)
    obj = to_json(aug)
    assert set(obj) == {"doc_id", "rewrite", "qa", "source"}
    assert set(obj["qa"][0]) == {"question", "answer", "full_answer"}
    assert from_json(json.loads(json.dumps(obj))) == aug
    assert isinstance(from_json(obj), Augmentation)


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda o: o.pop("rewrite"), "'rewrite'"),
        (lambda o: o.pop("source"), "'source'"),
        (lambda o: o["qa"][1].pop("answer"), "qa[1]: missing field 'answer'"),
        (lambda o: o.update(doc_id=7), "'doc_id' must be a string"),
        (lambda o: o.update(qa="oops"), "'qa' must be a list"),
    ],
)
def test_from_json_names_the_bad_field(mutate, field):
    obj = to_json(rule_augment(BRIDGE))
    mutate(obj)
    with pytest.raises(InputError, match=re.escape(field)):
        from_json(obj)
    with pytest.raises(InputError, match="expected a JSON object"):
        from_json(["not", "a", "dict"])
