"""What the LlamaIndex and LangChain runners share: their command line and token accounting.

Imported by them (run by their own venvs' pythons), never by rag.
"""

from __future__ import annotations

import argparse
import os


def arguments() -> argparse.Namespace:
    """--corpus, --model, --out; and the model loads offline. Call before importing the peer library."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--model", required=True, help="local sentence-transformers folder")
    parser.add_argument("--out", required=True)
    return parser.parse_args()


def token_figures(model_path: str, embedded_texts: list[str], limit: int) -> dict:
    """Tokens the model sees per chunk (with [CLS]/[SEP], capped at `limit`) and what truncation cut off."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    lengths = [len(ids) for ids in tokenizer(embedded_texts, add_special_tokens=True, truncation=False)["input_ids"]]
    return {
        "chunks": len(embedded_texts),
        "tokens_embedded": sum(min(n, limit) for n in lengths),
        "tokens_with_specials": sum(lengths),
        "truncated": sum(n > limit for n in lengths),
        "tokens_cut_off": sum(max(n - limit, 0) for n in lengths),
        "max_seq_length": limit,
    }
