"""Sentences and the answer spans inside them: the first step of the rule augmenter (`augment_rules`).

Every span is a verbatim piece of its sentence (a date, year, measure, count, number, quote, alias, colour,
material or name) found by regexes and general English word lists (months, number words, units, colours,
materials, function words): no list holds a word of any corpus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """An answer candidate inside one sentence.

    [start, end) is the answer; [pstart, pend) is the phrase a wh-question replaces, which can
    be wider (the counted noun in "40 workers", the "a ... colour" around a colour).
    """

    start: int
    end: int
    kind: str  # date, year, measure, count, number, quote, alias, colour, material, name
    text: str
    pstart: int
    pend: int
    extra: str = ""  # unit, counted noun or material category, used by the question templates


# ---------------------------------------------------------------- word lists and patterns

_MONTHS = ("January February March April May June July August September October November "
           "December").split()
_WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_MONTH = "(?:" + "|".join(_MONTHS) + ")"
# Case matters: "Dr. Watson" is an abbreviation, a sentence ending in "dr." is not.
_ABBREVIATIONS = {"St", "Dr", "Mr", "Mrs", "Ms", "Prof", "Mt", "Jr", "Sr", "vs", "Co", "Ltd", "Inc",
                  "approx", "c", "ca", "Rev", "Gen", "Capt", "Lt"}
_NUMBERED = {"No", "Nos", "Vol", "Fig", "p", "pp"}  # "No. 14": only before a number
_NUMBER_WORDS = ("two three four five six seven eight nine ten eleven twelve thirteen fourteen "
                 "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty "
                 "seventy eighty ninety hundred").split()
_NUM = (r"(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")"
        r"(?: (?:million|billion|thousand))?")
_UNITS = ("(?:square |cubic )?(?:kilometre|kilometer|metre|meter|centimetre|centimeter|millimetre|"
          "millimeter|mile|foot|feet|inch|inche|yard|hectare|acre|litre|liter|gallon|km|cm|mm|kg)s?"
          "|nautical miles?|light years?|degrees (?:Celsius|Fahrenheit)|degrees|per ?cent|percent"
          "|(?:gram|kilogram|tonne|ton|pound|ounce|second|minute|hour|day|week|month|year|decade"
          "|century|centurie)s?")
_IRREGULAR_PLURALS = "people|crew|staff|children|men|women|sheep|cattle|fish|deer|personnel"
# Words that can follow a number without being the counted noun ("in 1912 she was").
FUNCTION_WORDS = set(
    "a an the and or but of in on at by to from for with as is was were are be been has had have "
    "it its he she they his her their this that these those which who whom whose where when "
    "thus across plus always perhaps besides less unless whereas us yes into onto upon under "
    "over after before since until till than then also only not nor so yet inside outside near "
    "beside between during up down through along around via per".split()
)
_COLOURS = ("red orange yellow green blue violet purple pink brown black white grey gray crimson "
            "scarlet maroon olive indigo amber ivory turquoise golden silver copper bronze").split()
_PURE_COLOURS = [c for c in _COLOURS if c not in {"silver", "copper", "bronze", "olive", "indigo"}]
_MATERIALS = {
    "wood": "teak oak pine birch elm mahogany cedar walnut beech timber bamboo",
    "metal": "silver gold copper brass bronze iron steel tin zinc pewter platinum",
    "stone": "slate basalt granite limestone sandstone marble chalk flint quartz",
    "gas": "hydrogen helium oxygen nitrogen",
    "fabric": "linen wool silk cotton canvas leather",
    "fuel": "coal paraffin charcoal gas",
    "element": "boron calcium magnesium sodium potassium sulphur sulfur carbon",
    "material": "glass enamel clay porcelain bark milk wax",
}
_MATERIAL_OF = {w: cat for cat, words in _MATERIALS.items() for w in words.split()}
_SENT_END_RE = re.compile(r"[.!?][\"'”’)\]]*\s+|\n\s*\n")
_YEAR_RE = re.compile(r"\b(?:1[0-9]{3}|20[0-9]{2})\b(?![,.]\d)")
_DATE_RE = re.compile(
    rf"\b(?:\d{{1,2}} {_MONTH}(?: \d{{4}})?|{_MONTH} \d{{1,2}}, \d{{4}}|{_MONTH} \d{{4}})\b"
)
_MEASURE_RE = re.compile(rf"\b({_NUM})[ -]({_UNITS})\b(?!-)")
_COUNT_RE = re.compile(
    rf"\b({_NUM}) ((?:[a-z][a-z-]* )?(?:[a-z][a-z-]*[a-z]s|{_IRREGULAR_PLURALS}))\b(?!-)"
)
_NUMBER_RE = re.compile(r"(?<![\w.,/])(?:\d+/\d+|\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)"
                        r"(?: (?:million|billion|thousand))?(?![\w/]|[.,]\d)")
_QUOTE_RE = re.compile(r"[\"“]([^\"“”]{2,60})[\"”]")
_PAREN_RE = re.compile(r"\(([^()0-9]{3,60})\)")
_CAP = r"(?:[A-Z]\.|(?:St|Dr|Mt|Mr|Mrs|Ms|Prof)\.|[A-ZÀ-ÖØ-Þ][\w'’-]*)"
_CONNECTOR = r"(?:of|de|da|del|van|von|der|du|la|le|the|on|upon|&)"
_NAME_RE = re.compile(rf"(?<![\w'’-]){_CAP}(?: (?:{_CONNECTOR} ){{0,2}}{_CAP})*")
_COLOUR_RE = re.compile(
    rf"\b(?:(?:{'|'.join(_COLOURS)})-(?:{'|'.join(_COLOURS)})"
    rf"|(?:(?:pale|dark|light|deep|cobalt|navy|royal|sky|sea|bottle|lime|blood) )?"
    rf"(?:{'|'.join(_PURE_COLOURS)})"
    rf"|(?:olive|indigo)(?= [a-z]+s\b))\b(?!-)"
)
_MATERIAL_RE = re.compile(
    r"\b(?:[a-z]+'s )?(?:" + "|".join(sorted(_MATERIAL_OF, key=len, reverse=True)) + r")\b(?!-)"
)
_NOT_NAMES = {"The", "A", "An", "It", "Its", "He", "She", "They", "I", "In", "On", "At", "By"}
# Spans earlier in this list win when two overlap (a date contains a year, "1400 glyphs" a year).
_KIND_ORDER = ("quote", "date", "measure", "count", "year", "number", "colour", "material",
               "alias", "name")


# ---------------------------------------------------------------- sentences


def split_sentences(text: str) -> list[str]:
    """Split at . ! ? followed by a capital, but not after initials, abbreviations or in 3.5."""
    sentences, start = [], 0
    for m in _SENT_END_RE.finditer(text):
        if m.group().strip() and not _is_boundary(text, m):
            continue  # "J. Smith", "St. Ebba", "F.C. Rovers"
        piece = text[start : m.end()].strip()
        if piece:
            sentences.append(piece)
        start = m.end()
    if text[start:].strip():
        sentences.append(text[start:].strip())
    return sentences


def _is_boundary(text: str, m: re.Match) -> bool:
    nxt = text[m.end() : m.end() + 1]
    if not (nxt.isupper() or nxt.isdigit() or nxt in "\"'“‘(["):
        return False  # "e.g. the", "i.e., budget"
    words = text[: m.start()].split()
    word = words[-1].lstrip("\"'“‘([") if words else ""
    if text[m.start()] != ".":
        return True
    if re.fullmatch(r"[A-Z]", word) or word in _ABBREVIATIONS or (word in _NUMBERED and nxt.isdigit()):
        return False
    return not re.fullmatch(r"(?:[A-Za-z]\.)+[A-Za-z]", word)  # dotted acronyms: F.C, U.S


# ---------------------------------------------------------------- span extraction


def extract_spans(sentence: str, title: str = "") -> list[Span]:
    """Answer candidates in one sentence, non-overlapping, in sentence order."""
    found: list[Span] = []
    for finder in (_quotes, _dates, _measures, _counts, _years, _numbers, _colours,
                   _materials, _aliases, _names):
        found.extend(finder(sentence, title))
    found.sort(key=lambda s: (_KIND_ORDER.index(s.kind), s.pstart))
    kept: list[Span] = []
    for span in found:
        if all(span.pend <= k.pstart or span.pstart >= k.pend for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


def span_at(sent: str, start: int, end: int, kind: str, pstart: int | None = None,
          pend: int | None = None, extra: str = "") -> Span:
    pstart = start if pstart is None else pstart
    pend = end if pend is None else pend
    return Span(start, end, kind, sent[start:end], pstart, pend, extra)


def _quotes(sent: str, title: str) -> list[Span]:
    return [span_at(sent, m.start(1), m.end(1), "quote", m.start(), m.end())
            for m in _QUOTE_RE.finditer(sent)]


def _dates(sent: str, title: str) -> list[Span]:
    return [span_at(sent, m.start(), m.end(), "date") for m in _DATE_RE.finditer(sent)]


def _years(sent: str, title: str) -> list[Span]:
    return [span_at(sent, m.start(), m.end(), "year") for m in _YEAR_RE.finditer(sent)]


def _measures(sent: str, title: str) -> list[Span]:
    # The unit stays in the answer: "214 kilometres" is the fact, "214" alone is not.
    return [span_at(sent, m.start(), m.end(), "measure", extra=m.group(2))
            for m in _MEASURE_RE.finditer(sent)]


def _counts(sent: str, title: str) -> list[Span]:
    # The answer is the number; the counted noun moves into "how many workers".
    spans = []
    for m in _COUNT_RE.finditer(sent):
        noun = m.group(2)
        if any(w in FUNCTION_WORDS for w in noun.split()):
            continue  # "1912 she was", "1688 and its"
        if _YEAR_RE.fullmatch(m.group(1)) and re.search(r"\b(?:in|since|of|by|until|from)\s$",
                                                        sent[: m.start()]):
            continue  # "in 1929 records show": a year, not a count
        spans.append(span_at(sent, m.start(1), m.end(1), "count", m.start(), m.end(), noun))
    return spans


def _numbers(sent: str, title: str) -> list[Span]:
    return [span_at(sent, m.start(), m.end(), "number") for m in _NUMBER_RE.finditer(sent)]


def _colours(sent: str, title: str) -> list[Span]:
    return [span_at(sent, m.start(), m.end(), "colour") for m in _COLOUR_RE.finditer(sent)]


def _materials(sent: str, title: str) -> list[Span]:
    spans = []
    for m in _MATERIAL_RE.finditer(sent):
        key = m.group().split("'s ")[-1]
        spans.append(span_at(sent, m.start(), m.end(), "material", extra=_MATERIAL_OF[key]))
    return spans


def _aliases(sent: str, title: str) -> list[Span]:
    # "(Lucerna ferrandii)", "(AJK)": a second name for something in the sentence.
    return [span_at(sent, m.start(1), m.end(1), "alias", m.start(), m.end())
            for m in _PAREN_RE.finditer(sent)]


def _names(sent: str, title: str) -> list[Span]:
    spans = []
    title_words = set(title_core(title).split())
    for m in _NAME_RE.finditer(sent):
        start, text = m.start(), m.group()
        words = text.split()
        # A capital at the start of a sentence is grammar, not a name, unless it is the title.
        if start == 0 and words[0] not in title_words and not (words[0].endswith(".") and len(words) > 1):
            words = words[1:]
        while words and words[0] in _MONTHS + _WEEKDAYS:
            words = words[1:]
        while words and re.fullmatch(_CONNECTOR, words[0]):
            words = words[1:]
        if not words or (len(words) == 1 and words[0] in _NOT_NAMES):
            continue
        name = re.sub(r"['’]s$", "", " ".join(words))  # "Saddler's Arch" stays, "Pakistan's" -> "Pakistan"
        begin = m.end() - len(" ".join(words))
        spans.append(span_at(sent, begin, begin + len(name), "name"))
    return spans




def title_core(title: str) -> str:
    """The title as a noun phrase: "Dravoss (river)" -> "Dravoss"."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", title).strip()
