"""Behaviour of the QA metrics (PRAG / SQuAD / HotpotQA rules) and answer extraction."""

import random
import string
from collections import Counter

import pytest

from polyprag.lm.extract import extract_answer, extract_answer_prag
from polyprag.eval.metrics import (
    Scores,
    accuracy,
    exact_match,
    f1_score,
    mean_scores,
    normalize_answer,
    score,
    token_halves,
)

# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("The  Answer!", "answer"),
        ("Theater", "theater"),  # articles are removed only as whole words
        ("an Apple a day", "apple day"),
        ("  St. Louis,\tMissouri ", "st louis missouri"),
        ("U.S.", "us"),
        ("9,984", "9984"),
        ("", ""),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_normalize_removes_punctuation_before_articles():
    # SQuAD order: "-" goes first, so "the-end" becomes one word "theend" and no article is
    # left to drop (removing articles first would have given "end").
    assert normalize_answer("the-end") == "theend"


# --------------------------------------------------------------------------- exact match


def test_exact_match_ignores_case_punctuation_and_articles():
    assert exact_match("the Eiffel Tower.", ["Eiffel Tower"]) == 1.0


def test_exact_match_takes_best_alias():
    assert exact_match("NYC", ["New York City", "nyc"]) == 1.0
    assert exact_match("New York", ["New York City", "NYC"]) == 0.0


# --------------------------------------------------------------------------- F1


def test_f1_partial_overlap_known_value():
    # precision 2/2, recall 2/3 -> 2 * 1 * 2/3 / (1 + 2/3) = 0.8
    assert f1_score("Henry Kaiser", ["Henry J. Kaiser"]) == pytest.approx(0.8)


def test_f1_is_max_over_aliases():
    assert f1_score("Henry Kaiser", ["Ford", "Henry J. Kaiser", "Henry Kaiser"]) == 1.0


def test_f1_no_common_tokens_is_zero():
    assert f1_score("Paris", ["London"]) == 0.0


def test_f1_yes_no_are_all_or_nothing():
    assert f1_score("yes", ["no"]) == 0.0
    assert f1_score("no", ["no"]) == 1.0
    # A special gold only matches exactly...
    assert f1_score("yes it is", ["yes"]) == 0.0
    # ...but a special prediction against an ordinary gold sentence also scores 0.
    assert f1_score("yes", ["yes it is"]) == 0.0
    assert f1_score("noanswer", ["no answer"]) == 0.0


def test_f1_yes_inside_longer_answer_gets_partial_credit():
    # Neither side is exactly yes/no/noanswer, so ordinary token overlap applies.
    assert f1_score("yes it is", ["yes it was"]) == pytest.approx(2 / 3)


def test_token_halves_are_recall_and_precision_of_the_shared_tokens():
    # "henry kaiser" against "henry j kaiser": 2 shared, recall 2/3, precision 2/2.
    assert token_halves("henry kaiser", "henry j kaiser") == pytest.approx((2 / 3, 1.0))
    assert token_halves("paris", "london") == (0.0, 0.0)
    assert token_halves("yes it is", "yes") == (0.0, 0.0)  # HotpotQA's yes/no rule holds for the halves too


def _reference_f1(pred_tokens, gold_tokens):
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    p = same / len(pred_tokens)
    r = same / len(gold_tokens)
    return 2 * p * r / (p + r)


def test_f1_matches_independent_reference_on_random_token_lists():
    rng = random.Random(0)
    vocab = ["paris", "london", "river", "king", "john", "1923", "blue", "x"]
    nonzero = 0
    for _ in range(50):
        pred = [rng.choice(vocab) for _ in range(rng.randint(1, 6))]
        gold = [rng.choice(vocab) for _ in range(rng.randint(1, 6))]
        expected = _reference_f1(pred, gold)
        nonzero += expected > 0
        assert f1_score(" ".join(pred), [" ".join(gold)]) == pytest.approx(expected)
    assert nonzero > 10  # the sample exercises real overlaps, not just zeros


# --------------------------------------------------------------------------- accuracy


def test_accuracy_gold_contained_in_prediction():
    assert accuracy("It was Henry J. Kaiser, the industrialist", ["Henry J. Kaiser"]) == 1.0


def test_accuracy_requires_whole_tokens():
    assert accuracy("a party", ["art"]) == 0.0
    assert accuracy("modern art", ["art"]) == 1.0


def test_accuracy_ignores_golds_that_normalise_to_empty():
    # "The" normalises to "" which would otherwise be "contained" in everything.
    assert accuracy("anything", ["The", "!"]) == 0.0


# --------------------------------------------------------------------------- Scores


def test_score_bundles_all_three_metrics():
    assert score("Henry Kaiser", ["Henry J. Kaiser"]) == Scores(
        em=0.0, f1=pytest.approx(0.8), acc=0.0
    )
    assert score("the Paris", ["Paris"]) == Scores(em=1.0, f1=1.0, acc=1.0)


def test_mean_scores():
    m = mean_scores([Scores(1.0, 1.0, 1.0), Scores(0.0, 0.5, 1.0)])
    assert (m.em, m.f1, m.acc) == (0.5, 0.75, 1.0)
    assert mean_scores([]) == Scores(0.0, 0.0, 0.0)


@pytest.mark.parametrize("metric", [exact_match, f1_score, accuracy, score])
def test_empty_golds_is_an_error_naming_the_prediction(metric):
    with pytest.raises(ValueError, match="Henry Kaiser"):
        metric("Henry Kaiser", [])


def test_gold_given_as_bare_string_is_rejected():
    with pytest.raises(TypeError, match="list"):
        exact_match("Paris", "Paris")


# --------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    ("generation", "expected"),
    [
        ("The answer is: Ilse Brandt. She was a German actress.", "Ilse Brandt"),
        (
            "Henry J. Kaiser was an American industrialist.",
            "Henry J. Kaiser was an American industrialist",
        ),
        ("9,984 people", "9,984 people"),
        ("St. Louis, Missouri", "St. Louis"),
        ("3.5 million", "3.5 million"),
        ('The answer is "Paris".', "Paris"),
        ("Answer: yes", "yes"),
        ("The answer is:\nParis", "Paris"),
        ("U.S. Navy", "U.S. Navy"),
        ("", ""),
        ("Dr. John Smith. He wrote the book in 1990.", "Dr. John Smith"),
        ("No. The film was released in 1995.", "No"),
        ("Paris\nExplanation: Paris is the capital of France.", "Paris"),
        (
            "Both were born in Ohio. So the answer is 1923. Hope this helps.",
            "1923",
        ),
        ("The answer is unclear at first, but the answer is **Lyon**.", "Lyon"),
        ("A: Washington, D.C.", "Washington"),
        ("The answer is U.S.", "U.S"),
        ("  Mount Everest.  ", "Mount Everest"),
        ("He was born in 1990. He died in 2020.", "He was born in 1990"),
        ("The population was 9,984, according to the census.", "The population was 9,984"),
    ],
)
def test_extract_answer(generation, expected):
    assert extract_answer(generation) == expected


def test_extract_answer_falls_back_to_first_nonempty_line():
    # Nothing follows "the answer is", so the first non-empty line is returned as is.
    assert extract_answer("\n  I am not sure the answer is\n\n") == "I am not sure the answer is"


def test_extract_answer_prag_is_crude():
    # PRAG cuts at every ".", so initials are lost; extract_answer keeps them.
    assert extract_answer_prag("Henry J. Kaiser") == "Henry J"
    assert extract_answer("Henry J. Kaiser") == "Henry J. Kaiser"
    assert extract_answer_prag("9,984 people") == "9"


def test_extract_answer_prag_matches_original_rule():
    # PRAG's chain-of-thought branch: first, case-sensitive "the answer is".
    text = "Reasoning... so the answer is Paris, France. Indeed the answer is Lyon."
    assert extract_answer_prag(text) == "Paris"
    assert extract_answer_prag("The answer is Paris.") == "The answer is Paris"
    assert extract_answer_prag("the answer is Paris", with_cot=False) == "the answer is Paris"
    assert extract_answer_prag("  Paris\nFrance") == "Paris"


def test_extractors_never_raise_on_arbitrary_text():
    rng = random.Random(0)
    alphabet = string.ascii_letters + string.digits + " .,:\n\"'*"
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        for extract in (extract_answer, extract_answer_prag):
            out = extract(text)
            assert out == out.strip()
            assert "\n" not in out
