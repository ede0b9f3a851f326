"""A deterministic stand-in for the embedding model, for fast tests of logic (never of quality)."""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Sequence

import numpy as np

_WORD = re.compile(r"\w+")


class FakeEmbedder:
    """Hashed bag-of-words vectors: texts that share words get a high cosine; a text always gets the same vector."""

    def __init__(self, name: str = "fake-model", dimension: int = 256, max_tokens: int = 64, delay: float = 0.0):
        self.name = name
        self.dimension = dimension
        self.max_tokens = max_tokens
        self.delay = delay
        """Seconds to sleep per encoded text, to widen race windows in concurrency tests."""
        self.embedded: list[str] = []
        """Every text encoded so far, so a test can tell what a build sent to the model."""

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Unit-length float32 rows; a text without words gets a fixed vector of its own."""
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                vectors[row, zlib.crc32(word.encode("utf-8")) % self.dimension] += 1.0
            if not vectors[row].any():
                vectors[row, 0] = 1.0
        if self.delay:
            time.sleep(self.delay * len(texts))
        self.embedded.extend(texts)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Whitespace-separated words per text."""
        return [len(text.split()) for text in texts]
