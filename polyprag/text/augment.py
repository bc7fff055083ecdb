"""Document augmentation (PRAG protocol) and the training samples built from it.

Per document: one rewrite and QA pairs, from an LLM (PRAG's prompts) or from rules (`augment_rules`).
Results are cached as JSONL keyed by document hash + augmenter config, so they are never recomputed by
accident. LLM outputs that do not parse after the allowed retries are counted and fall back to rules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tqdm.auto import tqdm

from .. import distributed
from .augment_rules import Augmentation, QAPair, cloze_question, from_json, rule_augment, to_json
from .spans import span_at, split_sentences, title_core
from .corpus import Document
from ..errors import InputError

log = logging.getLogger("polyprag")

AUGMENTERS = ("rules", "llm")
PRAG_QA = 3  # QA pairs per document in PRAG's published recipe, whatever poly's --max-qa
RULES_MAX_QA = 8  # default: more QA pairs ⇒ more facts learned (facts in no QA pair are not learned)
LLM_RETRIES = 2
LLM_PARSE = 2  # in the cache key: LLM outputs cached under an older parse_qa are asked again
RULES_VERSION = 3  # in the cache key: raise it when augment_rules' output changes (2: topic read from the document;
#                   3: no compound materials drawn from the sample)
AUGMENT_MAX_TOKENS = 256  # per rewrite or QA list
# --augment-url: an OpenAI-compatible server writes the LLM augmenter's text
REMOTE_CONCURRENCY, REMOTE_TIMEOUT_S, REMOTE_RETRIES = 4, 300, 2
AUGMENT_KEY_ENV = "POLYPRAG_AUGMENT_KEY"  # its API key, if it needs one

# PRAG's augmentation prompts (data_augment.py), verbatim in substance.
REWRITE_PROMPT = ("Rewrite the following passage. While keeping the entities, proper nouns, and key details such as "
                  "names, locations, and terminology intact, create a new version of the text that expresses the same "
                  "ideas in a different way. Make sure the revised passage is distinct from the original one, but "
                  "preserves the core meaning and relevant information.\n{passage}")
EXAMPLE_QUESTION = "What is the capital of France?"  # QA_PROMPT's format example
QA_PROMPT = ("I will provide a passage of text, and you need to generate three different questions based on the "
             "content of this passage. Each question should be answerable using the information provided in the "
             "passage. Additionally, please provide an appropriate answer for each question derived from the "
             "passage.\nYou need to generate the question and answer in the following format:\n[\n    {{\n"
             "        \"question\": \"What is the capital of France?\",\n        \"answer\": \"Paris\",\n"
             "        \"full_answer\": \"The capital of France is Paris.\"\n    }}\n]\n\nThis list should have at "
             "least three elements. You only need to output this list in the above format.\nPassage:\n{passage}")


@dataclass(frozen=True)
class Sample:
    """One training sequence: the document's row, a question, its answer, and optionally a passage shown."""

    doc: int
    question: str
    answer: str
    passage: str | None = None  # shown in the prompt
    source: str | None = None  # the document, shown only to the distillation teacher
    routed: bool = True  # False: trained through every adapter alike (format samples, format_routing "uniform")


def cache_key(doc: Document, augmenter: str, model: str) -> str:
    return hashlib.sha256(json.dumps([doc.id, doc.title, doc.text, augmenter, model]).encode()).hexdigest()[:24]


def augment_documents(docs: list[Document], augmenter: str, lm=None, cache: Path | None = None,
                      progress: bool = True, max_qa: int = RULES_MAX_QA, url: str = "",
                      model_name: str = "") -> list[Augmentation]:
    """`max_qa` caps the rule augmenter's QA pairs per document (the LLM writes PRAG's 3). With `url`, the
    LLM augmenter's text comes from that OpenAI-compatible server's `model_name`, not from `lm`."""
    if augmenter not in AUGMENTERS:
        raise InputError(f"--augmenter {augmenter!r}; choose from {list(AUGMENTERS)}.")
    writer = f"{model_name}@{url}" if url else lm.spec if augmenter == "llm" else ""
    model = f"{writer} parse={LLM_PARSE}" if augmenter == "llm" else f"max_qa={max_qa} rules={RULES_VERSION}"
    keys = [cache_key(d, augmenter, model) for d in docs]
    cached = _read_cache(cache) if cache else {}
    missing = [d for d, k in zip(docs, keys) if k not in cached]
    if missing:
        log.info("augmenting %d documents with %s (%d cached)", len(missing), augmenter, len(docs) - len(missing))
        mine = missing[distributed.block(len(missing))]  # under several processes, each its share
        if augmenter == "rules":
            made = [rule_augment(d, max_qa=max_qa) for d in mine]
        else:  # the LLM's text from the server at `url`, or from the loaded model
            made = llm_augment(mine, partial(chat_completions, url, model_name, progress=progress) if url
                               else partial(_local_completions, lm, progress=progress))
        fresh = ([from_json(o) for o in distributed.gather_json([to_json(a) for a in made])]
                 if distributed.active() else made)
        new = {cache_key(d, augmenter, model): a for d, a in zip(missing, fresh)}
        cached.update(new)
        if cache and distributed.is_main():
            _append_cache(cache, new)
    return [cached[k] for k in keys]


def llm_augment(docs: list[Document], complete: Callable[[list[str]], list[str]]) -> list[Augmentation]:
    """PRAG's protocol; `complete` turns user messages into the LLM's replies. Bounded retries; unparsable QA
    falls back to rules (counted)."""
    rewrites = complete([REWRITE_PROMPT.format(passage=d.text) for d in docs])
    qa: list[list[QAPair] | None] = [None] * len(docs)
    for _ in range(1 + LLM_RETRIES):
        todo = [i for i, q in enumerate(qa) if q is None]
        if not todo:
            break
        outs = complete([QA_PROMPT.format(passage=docs[i].text) for i in todo])
        for i, out in zip(todo, outs):
            qa[i] = parse_qa(out, docs[i].text)
    failed = [i for i, q in enumerate(qa) if q is None]
    if failed:
        log.warning("LLM QA unparsable for %d of %d documents after %d tries: rules used for them",
                    len(failed), len(docs), 1 + LLM_RETRIES)
    return [Augmentation(d.id, rw.strip() or d.text, tuple(q) if q else rule_augment(d).qa,
                         "llm" if q else "llm-failed+rules") for d, rw, q in zip(docs, rewrites, qa)]


def _local_completions(lm, messages: list[str], progress: bool = True) -> list[str]:
    """The replies of the loaded model `lm`, each message as the one user turn of a chat."""
    from ..lm.generate import GenerationConfig, generate

    gen = GenerationConfig(max_new_tokens=AUGMENT_MAX_TOKENS, batch_size=4)
    return generate(lm, [_chat(lm.tokenizer, m) for m in messages], gen, progress)


def chat_completions(url: str, model: str, messages: list[str], progress: bool = True) -> list[str]:
    """The replies of an OpenAI-compatible server (vLLM, TGI, llama.cpp, `polyprag serve`) at `url`, each message
    as one user turn, greedy: at most REMOTE_CONCURRENCY requests at a time, each with a timeout and
    REMOTE_RETRIES retries after a network error or a 429/5xx; a refusal (other 4xx) stops at once. stdlib
    urllib and threads: the calls are plain JSON over HTTP, no client library needed."""
    endpoint = url.rstrip("/") + ("" if url.rstrip("/").endswith("/v1") else "/v1") + "/chat/completions"
    headers = {"Content-Type": "application/json"}
    if os.environ.get(AUGMENT_KEY_ENV):
        headers["Authorization"] = f"Bearer {os.environ[AUGMENT_KEY_ENV]}"

    def one(message: str) -> str:
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": message}],
                           "max_tokens": AUGMENT_MAX_TOKENS, "temperature": 0}).encode()
        for attempt in range(REMOTE_RETRIES + 1):
            try:
                request = urllib.request.Request(endpoint, body, headers)
                with urllib.request.urlopen(request, timeout=REMOTE_TIMEOUT_S) as response:
                    return json.loads(response.read())["choices"][0]["message"]["content"] or ""
            except urllib.error.HTTPError as e:
                if e.code != 429 and e.code < 500:
                    raise InputError(f"{endpoint} refused the augmentation request (HTTP {e.code}: "
                                     f"{e.read()[:300].decode(errors='replace')}); check --augment-model and the "
                                     f"server's limits (max_tokens {AUGMENT_MAX_TOKENS}).") from None
                error = f"HTTP {e.code}"
            except (OSError, ValueError, KeyError, IndexError) as e:  # network, timeout, not the expected JSON
                error = repr(e)
            time.sleep(0.5 * 2 ** attempt)
        raise InputError(f"{endpoint} gave no usable reply after {REMOTE_RETRIES + 1} tries ({error}); check "
                         "that the server is up and OpenAI-compatible, or use --augmenter rules.")

    with ThreadPoolExecutor(REMOTE_CONCURRENCY) as pool:
        return list(tqdm(pool.map(one, messages), total=len(messages), desc="augmenting", unit="request",
                         disable=not progress))


def _chat(tokenizer, text: str) -> str:
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True)
    return f"{tokenizer.bos_token or ''}{text}\n"


def parse_qa(text: str, passage: str) -> list[QAPair] | None:
    """The first JSON list of {question, answer} objects in `text`; None when there is none usable."""
    match = re.search(r"\[.*\]", text, re.S)
    try:
        items = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        return None
    if not isinstance(items, list):
        return None
    pairs = [QAPair(str(i["question"]).strip(), str(i["answer"]).strip(), str(i.get("full_answer", i["answer"])).strip())
             for i in items if isinstance(i, dict) and i.get("question") and i.get("answer")]
    # Small models often copy the prompt's format example; it says nothing about the passage.
    pairs = [p for p in pairs if p.question.lower() != EXAMPLE_QUESTION.lower()]
    return pairs[:3] or None


def training_samples(docs: list[Document], augs: list[Augmentation], context_qa: int = 2,
                     rewrite: bool = True, contrast: int = 0, format_routing: str = "own",
                     paraphrases: int = 0, title_qa: int = 0) -> list[Sample]:
    """PRAG's samples: the first `context_qa` QA pairs (PRAG: 2) each with the passage and with the rewrite
    in context; every QA pair alone too (the parametric modes ask the bare question, so it must be trained).
    Samples with a passage cost ~3× a bare one: `context_qa` and `rewrite` trade build time for coverage.
    `contrast`: that many yes/no and either-or questions per document, made from its QA pairs
    (`contrast_pairs`), so that the adapters keep the reader's yes/no and comparison answers; with
    `format_routing` "uniform" they are trained through every adapter alike, so that the routing learns from
    the document's facts only and the answer format lives in what all documents share. `paraphrases`: up to
    that many other phrasings of each QA pair (`paraphrased`), bare: the same fact asked as users may ask it.
    `title_qa`: up to that many questions whose answer is the document's own name (`title_questions`)."""
    samples = []
    answers = [qa.answer for aug in augs for qa in aug.qa]  # distractors for the contrast questions
    for i, (doc, aug) in enumerate(zip(docs, augs)):
        rewritten = f"{doc.title}\n{aug.rewrite}" if doc.title else aug.rewrite
        source = doc.content()
        for j, qa in enumerate(aug.qa):
            if j < context_qa:
                samples.append(Sample(i, qa.question, qa.answer, source, source))
                if rewrite:
                    samples.append(Sample(i, qa.question, qa.answer, rewritten, source))
            samples.append(Sample(i, qa.question, qa.answer, source=source))
            samples += [Sample(i, q, qa.answer, source=source) for q in paraphrased(qa, doc.title)[:paraphrases]]
        samples += [Sample(i, q, a, source=source, routed=format_routing == "own")
                    for q, a in contrast_pairs(aug.qa, answers, contrast, seed=i)]
        samples += [Sample(i, q, a, source=source) for q, a in title_questions(doc, title_qa)]
    return samples


def title_questions(doc: Document, n: int) -> list[tuple[str, str]]:
    """Up to n (question, answer) pairs whose answer is the document's own name (its title without a
    parenthesis): its first sentences that name it once, as clozes with the name blanked. Every other sample
    asks from the name to a fact; a two-hop question often asks from a fact to the name ("which film did Stacy
    Title direct?"), and a model trained on "A is B" does not learn "B is A" (the reversal curse, Berglund et
    al. 2023)."""
    name = title_core(doc.title)
    whole = re.compile(rf"(?<!\w){re.escape(name)}(?!\w)")  # the name as words, not inside a longer one
    out = []
    for sentence in split_sentences(doc.text) if name and n > 0 else []:
        named = list(whole.finditer(sentence))
        if len(named) != 1 or len(sentence.split()) - len(name.split()) < 3:
            continue  # not named, named twice (the other would give it away), or nothing else to go on
        at = named[0].start()
        out.append((cloze_question(sentence, span_at(sentence, at, at + len(name), "name"), ""), name))
        if len(out) == n:
            break
    return out


def prag_samples(docs: list[Document], augs: list[Augmentation]) -> list[Sample]:
    """PRAG's published recipe (oneal2000/PRAG src/encode.py, get_train_data): of a document's QA pairs, the first
    half (rounded up) each with the passage and with the rewrite in context, the rest as bare questions; nothing
    else (3 pairs: 5 sequences). Only the first PRAG_QA pairs: a build's larger --max-qa is poly's recipe, not PRAG's."""
    samples = []
    for i, (doc, aug) in enumerate(zip(docs, augs)):
        rewritten = f"{doc.title}\n{aug.rewrite}" if doc.title else aug.rewrite
        source = doc.content()
        pairs = aug.qa[:PRAG_QA]
        with_passage = (len(pairs) + 1) // 2
        for j, qa in enumerate(pairs):
            passages = (source, rewritten) if j < with_passage else (None,)
            samples += [Sample(i, qa.question, qa.answer, p, source) for p in passages]
    return samples


def paraphrased(qa: QAPair, title: str) -> list[str]:
    """Other questions for the same answer, from the sentence it came from (none if the answer is not in it
    once, with at least 3 other words):
    a cloze of the sentence ("<title>: ... ___ .... What fills the blank?"), then the sentence up to the
    answer to complete; the QA pair's own question is never repeated. Rules only: any augmenter's pairs."""
    sentence = qa.full_answer.strip()
    at = sentence.find(qa.answer) if qa.answer else -1
    before, after = (sentence[:at], sentence[at + len(qa.answer):]) if at >= 0 else ("", "")
    if at < 0 or len(f"{before} {after}".split()) < 3 or qa.answer in before + after:
        return []  # not in its sentence, nearly the whole sentence, or there twice: no question left to ask
    about = f"{title}: " if title else ""
    start = before.rstrip()
    forms = [cloze_question(sentence, span_at(sentence, at, at + len(qa.answer), "answer"), title)]  # the rules' cloze
    forms += [f"{about}complete the sentence: {start} …"] if len(start.split()) >= 2 else []
    return [q for q in forms if q.strip().lower() != qa.question.strip().lower()]


def contrast_pairs(qa: tuple[QAPair, ...], answers: list[str], n: int, seed: int = 0) -> list[tuple[str, str]]:
    """n (question, answer) pairs cycling through three kinds, from QA pairs whose answer is in their sentence:
    "Is it true that <sentence>?" → yes; the sentence with its answer swapped for another → no; and
    "<question> <answer> or <other>?" → the answer (order alternating). Distractors are other QA answers of
    the same shape (a number or date for a number or date, a name for a name)."""
    usable = [p for p in qa if p.answer and p.answer in p.full_answer]
    out = []
    for k in range(n if usable else 0):
        pair = usable[k % len(usable)]
        others = [a for a in answers if _shape(a) == _shape(pair.answer) and a.strip().lower() != pair.answer.strip().lower()]
        other = others[(seed * 7 + k * 13) % len(others)] if others else None
        sentence = pair.full_answer.strip().rstrip(".")
        kind = k % 3
        if kind == 0 or other is None:
            out.append((f"Is it true that {sentence}?", "yes"))
        elif kind == 1:
            out.append((f"Is it true that {sentence.replace(pair.answer, other, 1)}?", "no"))
        else:
            first, second = (pair.answer, other) if (seed + k) % 2 == 0 else (other, pair.answer)
            out.append((f"{pair.question.rstrip('?').strip()}: {first} or {second}?", pair.answer))
    return out


def _shape(answer: str) -> tuple[bool, bool]:
    return any(c.isdigit() for c in answer), answer[:1].isupper()


def _read_cache(path: Path) -> dict[str, Augmentation]:
    if not path.exists():
        return {}
    out = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                obj = json.loads(line)
                out[obj["key"]] = from_json(obj)
            except (json.JSONDecodeError, KeyError, InputError) as e:
                log.warning("%s:%d: unreadable cache line skipped (%s); it will be recomputed", path, lineno, e)
    return out


def _append_cache(path: Path, new: dict[str, Augmentation]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:  # appending whole lines: a crash loses at most the last one
        for key, aug in new.items():
            f.write(json.dumps({"key": key, **to_json(aug)}, ensure_ascii=False) + "\n")


def write_augmentations(augs: list[Augmentation], path: Path) -> None:
    path.write_text("".join(json.dumps(to_json(a), ensure_ascii=False) + "\n" for a in augs), encoding="utf-8")


def read_augmentations(path: Path) -> list[Augmentation]:
    if not path.exists():
        return []
    return [from_json(json.loads(l)) for l in path.read_text(encoding="utf-8").splitlines() if l.strip()]
