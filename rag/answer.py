"""Choosing, checking and citing quotes; saying plainly when the corpus holds no answer."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.chunking import LineIndex, split_sentences
from rag.config import Settings
from rag.corpus import read_record, read_source
from rag.lexical import terms
from rag.records import Answer, Citation, Hit, Passage
from rag.retrieve import Retriever

NO_ANSWER = "The corpus does not seem to answer this question."
NOT_A_QUESTION = "Please type a question in words, for example: What is this document about?"
STALE_INDEX = (
    "The passages that would answer this have changed on disk since the index was built, so "
    "no quote could be checked; run `rag build` and ask again."
)
MAX_QUESTION_CHARS = 2000
PASSAGES_TO_QUOTE = 6
"""How many of the best passages are read sentence by sentence for quotes."""
_MONTHS = "january|february|march|april|may|june|july|august|september|october|november|december"
_DATE = re.compile(rf"\b(?:1[0-9]\d\d|20\d\d|\d{{1,2}}(?:st|nd|rd|th)? century|(?:{_MONTHS})\b)", re.IGNORECASE)
_NUMBER = re.compile(r"\d|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|thousand|million|billion|dozen|half)\b", re.IGNORECASE)
_ASKS_DATE = re.compile(r"^\s*(?:when\b|what (?:date|year|day|month|time|century)|which (?:date|year|day|month|century)|in what year|since when)|\b(?:what|which) (?:year|date)\b", re.IGNORECASE)
_ASKS_NUMBER = re.compile(r"\bhow (?:many|much|long|old|far|often|large|big|tall|high)\b|\bwhat (?:number|percentage|percent|proportion|amount)\b", re.IGNORECASE)
SENTENCE_WEIGHT = 0.6
"""Share of the sentence's own similarity in its relevance; its passage's cosine has the rest."""
LEXICAL_WEIGHT = 0.15
"""Weight of the share of the question's content words a sentence contains."""
ANSWER_TYPE_BONUS = 0.12
"""Added to a sentence that holds what the question asks for: a date for "when", a number for "how many"."""
REFERRING = frozenset("it its they them their this that these those he she him her his there then and also".split())


@dataclass(frozen=True)
class Candidate:
    """One sentence that could be quoted, with where it stands and how well it answers."""

    hit: Hit
    start: int
    end: int
    text: str
    score: float
    similarity: float
    """Relevance to the question without answer-type and question-form adjustments (abstention uses it)."""


def clean_question(raw: str) -> str:
    """The question without control characters or runs of whitespace, cut to a sane length."""
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in str(raw or ""))
    return " ".join(text.split())[:MAX_QUESTION_CHARS]


def contextualize(question: str, history: Sequence[str] = ()) -> str:
    """What to search for: a short or referring follow-up is joined to the previous question."""
    if not history:
        return question
    content = terms(question)
    refers = any(word.strip("?,.!;:") in REFERRING for word in question.lower().split())
    if len(content) <= 2 or (refers and len(content) <= 5):
        return f"{history[-1]} {question}"
    return question


def answer(question: str, retriever: Retriever, settings: Settings, history: Sequence[str] = ()) -> Answer:
    """Quote the sentences of the corpus that answer `question`, each verified at its source offsets."""
    cleaned = clean_question(question)
    if not any(ch.isalnum() for ch in cleaned):
        return Answer(question, NOT_A_QUESTION, abstained=True)
    searched = contextualize(cleaned, history)
    embedder = retriever.embedder
    query_vector = embedder.encode([searched])[0]
    hits = retriever.search(searched, k=max(PASSAGES_TO_QUOTE, settings.max_quotes), query_vector=query_vector)
    if not hits:
        return Answer(question, NO_ANSWER + " The index holds no passages yet.", True, searched_for=searched)
    candidates = score_sentences(searched, query_vector, hits[:PASSAGES_TO_QUOTE], embedder, settings)
    best = max(candidates, key=lambda c: c.similarity, default=None)
    if best is None or best.similarity < settings.min_score:
        return _abstain(question, searched, hits, best.similarity if best else 0.0)
    picked = choose_quotes(candidates, settings.max_quotes, wanted=expected_answer_type(searched))
    chosen = widen_all(picked, settings.quote_context, settings.quote_chars)
    citations = verify(chosen, Path(settings.corpus), retriever.index)
    confidence = round(best.similarity, 4)
    if not citations:
        return Answer(question, STALE_INDEX, True, nearest=tuple(hits[:3]), searched_for=searched, confidence=confidence)
    text = "\n\n".join(f"“{c.quote}” [{c.n}]" for c in citations)
    passages = {h.passage.id: h.passage for h in hits}
    return Answer(
        question, text, False, tuple(citations), searched_for=searched, passages=passages, confidence=confidence
    )


def _abstain(question: str, searched: str, hits: list[Hit], confidence: float) -> Answer:
    nearest = tuple(hits[:3])
    lines = [NO_ANSWER, "", "Nearest passages, for reference only (they do not answer it):"]
    for hit in nearest:
        excerpt = " ".join(hit.passage.text.split())
        excerpt = excerpt[:160] + ("…" if len(excerpt) > 160 else "")
        lines.append(f"- {hit.passage.source}, lines {hit.passage.line_start}–{hit.passage.line_end}: {excerpt}")
    return Answer(question, "\n".join(lines), True, nearest=nearest, searched_for=searched, confidence=round(confidence, 4))


def score_sentences(
    question: str, query_vector: np.ndarray, hits: Sequence[Hit], embedder, settings: Settings
) -> list[Candidate]:
    """Every sentence of the hits, scored against the question itself, not only by its passage."""
    spans = []
    for hit in hits:
        passage = hit.passage
        for a, b in split_sentences(passage.text):
            spans.append((hit, passage.start + a, passage.start + b, passage.text[a:b]))
    if not spans:
        return []
    if settings.sentence_scoring:
        clauses = [_clauses(text) for *_, text in spans]
        texts = [text for *_, text in spans] + [c for parts in clauses for c in parts]
        sims = (embedder.encode(texts, batch_size=64) @ query_vector).tolist()
        sentence_sims = np.array(sims[: len(spans)])
        clause_sims, at = [], len(spans)
        for parts in clauses:
            clause_sims.append(max(sims[at : at + len(parts)], default=-1.0))
            at += len(parts)
    else:
        sentence_sims = np.array([hit.dense for hit, *_ in spans])
        clause_sims = [-1.0] * len(spans)
    question_terms = set(terms(question))
    wanted = expected_answer_type(question)
    best: dict[tuple[str, int], Candidate] = {}
    for (hit, start, end, text), sim, clause_sim in zip(spans, sentence_sims.tolist(), clause_sims):
        overlap = len(question_terms & set(terms(text))) / len(question_terms) if question_terms else 0.0
        # relevance decides abstention: meaning (sentence and passage) plus shared words, so a
        # name or code the model barely knows still counts; the score then ranks quotes.
        similarity = SENTENCE_WEIGHT * sim + (1 - SENTENCE_WEIGHT) * hit.dense + LEXICAL_WEIGHT * overlap
        score = similarity - (0.1 if text.rstrip().endswith("?") else 0.0)
        # a long sentence whose lead clause matches ("Two main tasks were set …: the first …, and
        # the second …") ranks by that clause; relevance, and so abstention, keeps the whole sentence
        score += SENTENCE_WEIGHT * max(0.0, clause_sim - sim)
        if wanted is not None and wanted.search(text):
            score += ANSWER_TYPE_BONUS
        key = (hit.passage.source, start)  # overlapping passages repeat sentences: keep the best
        if key not in best or best[key].score < score:
            best[key] = Candidate(hit, start, end, text, score, similarity)
    return list(best.values())


_CLAUSE_BREAK = re.compile(r"[:;]\s+|\s+[–—-]\s+")


def _clauses(sentence: str, min_words: int = 4) -> list[str]:
    """The clauses of a sentence split at colons, semicolons and dashes; none when it has only one."""
    parts = [part.strip() for part in _CLAUSE_BREAK.split(sentence)]
    parts = [part for part in parts if len(part.split()) >= min_words]
    return parts if len(parts) >= 2 else []


def expected_answer_type(question: str) -> re.Pattern | None:
    """A pattern for what the answer must hold: a date for "when…", a number for "how many…"."""
    if _ASKS_DATE.search(question):
        return _DATE
    if _ASKS_NUMBER.search(question):
        return _NUMBER
    return None


def choose_quotes(
    candidates: Sequence[Candidate], limit: int, margin: float = 0.12, wanted: re.Pattern | None = None
) -> list[Candidate]:
    """The best sentences: no repeats of one place, no near-duplicates, other sources preferred.

    `wanted` is what the answer must hold (see `expected_answer_type`): while no quote chosen
    holds it, a sentence that does is not held back for coming from the same file.
    """
    ranked = sorted(candidates, key=lambda c: -c.score)
    if not ranked:
        return []
    floor = ranked[0].score - margin
    chosen: list[Candidate] = []
    for candidate in ranked:
        if len(chosen) >= limit or candidate.score < floor:
            break
        if any(_same_place(candidate, c) or _near_duplicate(candidate.text, c.text) for c in chosen):
            continue
        same_file = any(c.hit.passage.source == candidate.hit.passage.source for c in chosen)
        supplies_answer = wanted is not None and wanted.search(candidate.text) and not any(wanted.search(c.text) for c in chosen)
        if same_file and candidate.score < floor + margin / 2 and not supplies_answer:
            continue  # a second quote from the same file must be nearly as good as the first
        chosen.append(candidate)
    return chosen


def widen(candidate: Candidate, context: int, max_chars: int) -> Candidate:
    """The chosen sentence with up to `context` neighbours each side from its paragraph, the next one
    first, while the run stays under `max_chars`: answers often sit in the sentence beside the match."""
    passage = candidate.hit.passage
    sentences = [(passage.start + a, passage.start + b) for a, b in split_sentences(passage.text)]
    try:
        i = sentences.index((candidate.start, candidate.end))
    except ValueError:
        return candidate
    first = last = i
    for _ in range(context):
        for step in (+1, -1):
            j = (last if step > 0 else first) + step
            if not 0 <= j < len(sentences):
                continue
            start, end = min(sentences[j][0], sentences[first][0]), max(sentences[j][1], sentences[last][1])
            run = passage.text[start - passage.start : end - passage.start]
            if "\n\n" in run or len(run) > max_chars:
                continue
            first, last = (first, j) if step > 0 else (j, last)
    start, end = sentences[first][0], sentences[last][1]
    text = passage.text[start - passage.start : end - passage.start]
    return Candidate(candidate.hit, start, end, text, candidate.score, candidate.similarity)


def widen_all(chosen: Sequence[Candidate], context: int, max_chars: int) -> list[Candidate]:
    """Widen each quote; a widened quote that overlaps an earlier one is dropped."""
    result: list[Candidate] = []
    for candidate in chosen:
        wide = widen(candidate, context, max_chars) if context > 0 else candidate
        if not any(_same_place(wide, other) for other in result):
            result.append(wide)
    return result


def _same_place(a: Candidate, b: Candidate) -> bool:
    return a.hit.passage.source == b.hit.passage.source and a.start < b.end and b.start < a.end


def _near_duplicate(a: str, b: str, threshold: float = 0.7) -> bool:
    sa, sb = set(terms(a)), set(terms(b))
    if not sa or not sb:
        return a.strip() == b.strip()
    return len(sa & sb) / len(sa | sb) >= threshold


def verify(chosen: Sequence[Candidate], corpus: Path, index=None) -> list[Citation]:
    """Citations for the quotes that stand, character for character, at their offsets in the file now.

    For a converted file (PDF, Word, HTML) the offsets are into its stored text of record, used only
    while the file on disk still has the sha256 indexed; `index` is the loaded index version.
    """
    texts: dict[str, object] = {}
    citations = []
    for candidate in chosen:
        source = candidate.hit.passage.source
        if source not in texts:
            texts[source] = _source_text(corpus, source, index)
        found = texts[source]
        text = getattr(found, "text", found)
        if text is None or text[candidate.start : candidate.end] != candidate.text:
            continue
        line_start, line_end = LineIndex(text).lines(candidate.start, candidate.end)
        place = {}
        if hasattr(found, "pages_of"):
            pages = found.pages_of(candidate.start, candidate.end)
            page = pages[0] if pages else None
            place = dict(page=page, page_label=found.label_of(page), pages=tuple(pages), section=found.section_of(candidate.start))
        citations.append(
            Citation(
                n=len(citations) + 1,
                source=source,
                start=candidate.start,
                end=candidate.end,
                line_start=line_start,
                line_end=line_end,
                quote=candidate.text,
                passage_id=candidate.hit.passage.id,
                score=round(candidate.score, 4),
                **place,
            )
        )
    return citations


def _source_text(corpus: Path, source: str, index):
    """The text a quote of `source` is checked against: the file itself, or a converted file's text of record."""
    entry = index.manifest.files.get(source) if index is not None else None
    if entry is not None and entry.kind != "text":
        return read_record(corpus, source, entry, index.folder)
    return read_source(corpus, source)


def highlight_spans(passage: Passage, citations: Sequence[Citation]) -> list[tuple[int, int, int]]:
    """(start, end, n) of each citation inside `passage.text`, for rendering."""
    return [
        (c.start - passage.start, c.end - passage.start, c.n)
        for c in citations
        if c.passage_id == passage.id or (c.source == passage.source and passage.start <= c.start and c.end <= passage.end)
    ]

