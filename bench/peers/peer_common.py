"""Token accounting shared by the peer runners (imported by them, run by their own venvs' pythons)."""

from __future__ import annotations


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
