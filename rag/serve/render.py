"""Answers as the chat page shows them: HTML built from escaped text only, so document and question text never
runs or renders as markup."""

from __future__ import annotations

import base64
import html

from rag.ingest.corpus import not_read_phrase
from rag.search import Retriever
from rag.serve import export
from rag.types import Answer, Citation

CSS = """
.rag-source { border: 1px solid var(--border-color-primary); border-radius: 6px; margin: 0 0 8px; padding: 6px 10px; }
.rag-source summary { cursor: pointer; font-weight: 600; overflow-wrap: anywhere; }
#rag-status, #rag-searched { overflow-wrap: anywhere; }
@media (max-width: 640px) { #rag-chat { height: 380px !important; } .rag-passage { font-size: 0.88em; } }
.rag-passage { white-space: pre-wrap; font-size: 0.92em; line-height: 1.45; margin-top: 6px; }
.rag-passage mark { background: #ffe58a; color: #000; padding: 0 1px; }
.rag-passage .rag-context { background: #fff8dc; color: #000; }
.rag-note { color: var(--body-text-color-subdued); font-size: 0.9em; }
.rag-page { margin: 6px 0; }
.rag-page img { max-width: 100%; border: 1px solid var(--border-color-primary); }
.rag-page figcaption { font-size: 0.85em; color: var(--body-text-color-subdued); }
"""


def render_pages(c: Citation, pages) -> str:
    """The rendered PDF page(s) of a citation as inline PNG images, each with its page number."""
    figures = []
    for image in pages:
        label = f" (printed {image.label})" if image.label and image.label != str(image.page) else ""
        caption = f"page {image.page}{label} of {c.source}, quote [{c.n}] highlighted"
        data = base64.b64encode(image.png).decode("ascii")
        figures.append(
            f"<figure class='rag-page' data-page='{image.page}'><img alt='{html.escape(caption, quote=True)}' "
            f"src='data:image/png;base64,{data}'><figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return "".join(figures)


def render_sources(result: Answer, pages=None) -> str:
    """HTML for the sources panel: each citation opens its passage with the quote highlighted, the
    neighbouring sentences (its context) shaded and the marked answer in bold, and a PDF citation
    its rendered page(s) with the quoted characters marked (`pages(citation)` gives them).

    Every piece of document text is escaped, so nothing from a document can run in the browser.
    """
    if result.abstained:
        if not result.nearest:
            return "<p class='rag-note'>No sources.</p>"
        items = "".join(
            f"<details class='rag-source rag-nearest'><summary>{html.escape(h.passage.source)} · "
            f"lines {h.passage.line_start}–{h.passage.line_end}</summary>"
            f"<div class='rag-passage'>{html.escape(h.passage.text)}</div></details>"
            for h in result.nearest
        )
        return "<p class='rag-note'>Nearest passages, for reference only (not an answer):</p>" + items
    items = []
    for c in result.citations:
        body = (
            f"<span class='rag-context'>{html.escape(c.context_before)}</span><mark data-n='{c.n}'>{_quote_html(c)}</mark>"
            f"<span class='rag-context'>{html.escape(c.context_after)}</span>"
        )
        passage = result.passages.get(c.key)
        a, b = c.start - len(c.context_before), c.end + len(c.context_after)
        if passage is not None and passage.start <= a and b <= passage.end:
            text = passage.text
            body = f"{html.escape(text[: a - passage.start])}{body}{html.escape(text[b - passage.start :])}"
        figures = render_pages(c, pages(c)) if pages is not None else ""
        items.append(
            f"<details class='rag-source' data-n='{c.n}'><summary>[{c.n}] {html.escape(export.where(c.to_dict()))} · "
            f"passage #{html.escape(c.passage_id.rsplit('#', 1)[-1])}</summary>"
            f"{figures}<div class='rag-passage'>{body}</div></details>"
        )
    return "".join(items)


def _quote_html(citation) -> str:
    """The escaped quote with its marked answer, if any, in <strong>."""
    quote = citation.quote
    if citation.answer_start is None or citation.answer_end is None:
        return html.escape(quote)
    a, b = citation.answer_start - citation.start, citation.answer_end - citation.start
    if not 0 <= a < b <= len(quote):
        return html.escape(quote)
    return f"{html.escape(quote[:a])}<strong>{html.escape(quote[a:b])}</strong>{html.escape(quote[b:])}"


def chat_text(result: Answer) -> str:
    """The assistant's message: the quotes with markers, then one line per citation."""
    if not result.citations:
        return result.text
    sources = "\n".join(f"[{c.n}] {export.where(c.to_dict())}" for c in result.citations)
    return f"{result.text}\n\n{sources}"


def chat_html(result: Answer) -> str:
    """`chat_text` as escaped HTML, with each quote's marked answer in <strong>."""
    if not result.citations:
        return html.escape(chat_text(result))
    quotes = "\n\n".join(f"“{_quote_html(c)}” [{c.n}]" for c in result.citations)
    sources = "\n".join(f"[{c.n}] {html.escape(export.where(c.to_dict()))}" for c in result.citations)
    return f"{quotes}\n\n{sources}"


def status_line(shelves) -> str:
    """Files, passages, model and build time of the collections a user may read (rag.serve.library.Shelf), and
    nothing of any other."""
    if not shelves:
        return "no collection to ask: this account may read none"
    if len(shelves) == 1 and shelves[0].name is None:
        return index_line(shelves[0].retriever)
    parts = []
    for shelf in shelves:
        if shelf.retriever is None:
            parts.append(f"{shelf.name}: not served ({shelf.problem})")
            continue
        manifest = shelf.retriever.index.manifest
        parts.append(
            f"{shelf.name}: {export.plural(len(manifest.files), 'file', 'files')}, "
            f"{export.plural(manifest.passages, 'passage', 'passages')}"
            + (f", newest build not served: {shelf.retriever.reload_error}" if shelf.retriever.reload_error else "")
        )
    return " · ".join(parts)


def index_line(retriever: Retriever) -> str:
    """Files, passages, model and build time of the index being served."""
    manifest = retriever.index.manifest
    line = (
        f"{export.plural(len(manifest.files), 'file', 'files')} · {export.plural(manifest.passages, 'passage', 'passages')} · "
        f"model {manifest.model} · built {manifest.built_at.replace('T', ' ').replace('+00:00', ' UTC')}"
    )
    if manifest.skipped:
        line += f" · {len(manifest.skipped)} skipped"
    if manifest.not_read:
        line += f" · {not_read_phrase(manifest.not_read)}"
    if retriever.reload_error:
        line += f" · newest build not served: {retriever.reload_error}"
    return line
