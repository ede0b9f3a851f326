"""Tables on a page of positioned text: each row read whole, as one line `| cell | cell | cell |`.

A PDF draws a table as runs of text on shared baselines, which the layout alone would join into sentences or
read column by column. Here a table is found from the text itself, ruled or not: at least MIN_ROWS consecutive
baselines, close together, over which at least two vertical channels of white space (wider than CHANNEL line
heights, where prose has only word spaces) run from top to bottom; the first and last rows with words in two cells or more (a row between may hold one), and
not every one of them a justified line (the same wide space between all its words). The channels cut each baseline into cells;
each baseline becomes one fragment marked `row`, which the layout keeps as a paragraph of its own, so a quote is a
whole row. Every cell keeps its characters' boxes; the separators have none. An empty cell stays (`|  |`).

Two-column tables are left as they are: on a page of two-column prose they cannot be told from the columns.
"""

from __future__ import annotations

from rag.ingest.readers.layout import Fragment, find_gutter

MIN_ROWS = 2
CHANNEL = 0.8
"""Least width of white space, in line heights, that parts two columns (a word space is about 0.3)."""
LINE_GAP = 2.5
"""Most space between two rows of one table, in line heights (more: a new table, or prose)."""


def with_rows(fragments: list[Fragment], frame) -> list[Fragment]:
    """The page's fragments with each table row among them merged into one fragment `| a | b | c |` marked `row`.
    On a page of two columns each column is looked at alone (the gutter would be a channel), and so are the lines
    that cross it."""
    if len(fragments) < MIN_ROWS:
        return fragments
    rows: dict[int, Fragment] = {}  # id of a line's first fragment → its row; the line's other fragments go
    dropped: set[int] = set()
    gutter = find_gutter(fragments, frame)
    if gutter is None:
        groups = [fragments]
    else:
        left = [f for f in fragments if f.right <= gutter]
        right = [f for f in fragments if f.left >= gutter]
        groups = [left, right, [f for f in fragments if f.left < gutter < f.right]]
    for group in groups:
        _find_rows(group, rows, dropped)
    if not rows:
        return fragments
    return [rows.get(id(f), f) for f in fragments if id(f) not in dropped]


def _find_rows(fragments: list[Fragment], rows: dict, dropped: set) -> None:
    """Record in `rows` and `dropped` the table rows among `fragments` (one column of the page, or all of it)."""
    if len(fragments) < MIN_ROWS:
        return
    lines = [_words(line) for line in _baselines(fragments)]
    start = 0
    while start < len(lines):
        end, channels = start + 1, _channels(lines[start : start + 1])
        while end < len(lines) and _close(lines[end - 1], lines[end]):
            wider = _channels(lines[start : end + 1])
            if len(wider) < 2:
                break
            end, channels = end + 1, wider
        while end > start and _filled(lines[end - 1], channels) < 2:
            end -= 1  # a line under the table with words in one cell only (a sentence) is not a row of it
        if (
            end - start >= MIN_ROWS
            and _filled(lines[start], channels) >= 2
            and not all(_justified(x) for x in lines[start:end])
        ):
            for line in lines[start:end]:
                first = line.fragments[0]
                rows[id(first)] = _row(first.page, line, channels)
                dropped.update(id(f) for f in line.fragments[1:])
            start = end
        else:
            start += 1  # the run may begin on the next line (the last line of a paragraph above a table)


class _Line:
    """One baseline: its fragments and their words as (left, right, text, boxes)."""

    def __init__(self, fragments: list[Fragment], words: list):
        self.fragments, self.words = fragments, words
        self.height = max(f.height for f in fragments)
        self.bottom, self.top = min(f.bottom for f in fragments), max(f.top for f in fragments)


def _baselines(fragments: list[Fragment]) -> list[list[Fragment]]:
    """Fragments grouped by baseline, top to bottom, each group left to right."""
    lines: list[list[Fragment]] = []
    for fragment in sorted(fragments, key=lambda f: -f.bottom):
        if lines and abs(lines[-1][0].bottom - fragment.bottom) < 0.5 * min(lines[-1][0].height, fragment.height):
            lines[-1].append(fragment)
        else:
            lines.append([fragment])
    return [sorted(line, key=lambda f: f.left) for line in lines]


def _words(fragments: list[Fragment]) -> _Line:
    import numpy as np

    words = []
    for fragment in fragments:
        text, boxes = fragment.text, fragment.boxes
        at = 0
        while at < len(text):
            if text[at] == " ":
                at += 1
                continue
            end = at
            while end < len(text) and text[end] != " ":
                end += 1
            drawn = boxes[at:end][~np.isnan(boxes[at:end, 0])]
            if len(drawn):
                words.append((float(drawn[:, 0].min()), float(drawn[:, 2].max()), text[at:end], boxes[at:end]))
            at = end
    return _Line(fragments, sorted(words, key=lambda w: w[0]))


def _close(above: _Line, below: _Line) -> bool:
    return above.bottom - below.top <= LINE_GAP * max(above.height, below.height)


def _channels(lines: list[_Line]) -> list[tuple[float, float]]:
    """The vertical bands of white space, at least CHANNEL line heights wide, inside the lines' span that no word of
    any of them crosses."""
    spans = sorted((w[0], w[1]) for line in lines for w in line.words)
    if not spans:
        return []
    least = CHANNEL * max(line.height for line in lines)
    channels, reach = [], spans[0][1]
    for left, right in spans[1:]:
        if left - reach >= least:
            channels.append((reach, left))
        reach = max(reach, right)
    return channels


def _justified(line: _Line) -> bool:
    """Whether the line is prose set with one wide space between every two words, the same everywhere (the way a
    justified line is spread), rather than cells."""
    gaps = [b[0] - a[1] for a, b in zip(line.words, line.words[1:])]
    return bool(gaps) and max(gaps) - min(gaps) < 0.15 * line.height


def _filled(line: _Line, channels) -> int:
    """How many of the cells the channels cut `line` into hold a word (a sentence under a table holds one)."""
    return len({sum(1 for left, _ in channels if word[0] >= left) for word in line.words})


def _row(page: int, line: _Line, channels) -> Fragment:
    import numpy as np

    cells: list[list] = [[] for _ in range(len(channels) + 1)]
    for word in line.words:
        column = sum(1 for left, _ in channels if word[0] >= left)
        cells[column].append(word)
    texts, boxes = ["|"], [np.full((1, 4), np.nan)]
    for cell in cells:
        texts.append(" ")
        boxes.append(np.full((1, 4), np.nan))
        for i, (_, _, text, word_boxes) in enumerate(cell):
            if i:
                texts.append(" ")
                boxes.append(np.full((1, 4), np.nan))
            texts.append(text)
            boxes.append(word_boxes)
        texts.append(" |")
        boxes.append(np.full((2, 4), np.nan))
    return Fragment(page, "".join(texts), np.vstack(boxes), row=True)
