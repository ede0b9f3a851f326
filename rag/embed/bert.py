"""rag's own sentence encoder for sentence-transformers models that are a BERT with mean pooling, as the
bundled all-MiniLM-L6-v2 is: the same vectors from torch, tokenizers and safetensors alone.

sentence-transformers imports transformers, scikit-learn, SciPy and pandas: 4-5 s of every process that
embeds (a cold `rag ask`, `rag serve`'s start, each build), against ~1.5 s for torch. This module loads
the model folder's own files (config.json, model.safetensors, tokenizer.json, 1_Pooling/config.json) into
a BERT laid out as transformers lays it out (`encoder.layer.N.attention.self.query`, …), so the embedder's
bfloat16 and int8 conversions find the layers they look for, and runs it as transformers and
sentence-transformers do: SDPA attention (unmasked when a batch has no padding), exact GELU, mean pooling
over the attention mask, unit length. Other models still go through sentence-transformers (`supports`).
Imports torch: imported only by `rag.embed.embedder` when it loads a model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

TRANSFORMER = "sentence_transformers.models.Transformer"
POOLING = "sentence_transformers.models.Pooling"
NORMALIZE = "sentence_transformers.models.Normalize"


def supports(folder: str | Path) -> bool:
    """Whether `folder` holds a model this encoder runs exactly: a BERT (absolute positions, GELU) with
    mean pooling and nothing else but a final normalisation, its weights as safetensors, a fast tokenizer."""
    root = Path(folder)
    try:
        modules = [m["type"] for m in json.loads((root / "modules.json").read_text(encoding="utf-8"))]
        config = read_config(root)
        pooling = json.loads((root / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
        settings = _sentence_config(root)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    mean_only = pooling.get("pooling_mode_mean_tokens") and not any(
        value for key, value in pooling.items() if key.startswith("pooling_mode_") and key != "pooling_mode_mean_tokens"
    )
    return (
        modules[:2] == [TRANSFORMER, POOLING]
        and modules[2:] in ([], [NORMALIZE])
        and bool(mean_only)
        and config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
        and not settings.get("do_lower_case", False)
        and (root / "model.safetensors").is_file()
        and (root / "tokenizer.json").is_file()
    )


def _sentence_config(root: Path) -> dict:
    path = root / "sentence_bert_config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


class Tokens:
    """The model's WordPiece tokenizer (its tokenizer.json), cutting texts as sentence-transformers does."""

    def __init__(self, path: Path, max_tokens: int):
        from tokenizers import Tokenizer

        self.backend_tokenizer = Tokenizer.from_file(str(path))
        self.backend_tokenizer.no_truncation()
        self.backend_tokenizer.no_padding()
        self.max_tokens = max_tokens

    def num_special_tokens_to_add(self) -> int:
        """Special tokens around one text ([CLS] … [SEP])."""
        return self.backend_tokenizer.post_processor.num_special_tokens_to_add(False)

    def features(self, texts: Sequence[str]) -> dict:
        """input_ids, token_type_ids and attention_mask of `texts` (stripped, cut to `max_tokens`), padded
        with zeros to the longest."""
        encodings = self.backend_tokenizer.encode_batch([str(text).strip() for text in texts])
        ids = [e.ids[: self.max_tokens - 1] + e.ids[-1:] if len(e.ids) > self.max_tokens else e.ids for e in encodings]
        length = max(len(row) for row in ids)
        input_ids = torch.zeros(len(ids), length, dtype=torch.long)
        attention_mask = torch.zeros(len(ids), length, dtype=torch.long)
        for r, row in enumerate(ids):
            input_ids[r, : len(row)] = torch.tensor(row)
            attention_mask[r, : len(row)] = 1
        return {"input_ids": input_ids, "token_type_ids": torch.zeros_like(input_ids), "attention_mask": attention_mask}


class Embeddings(nn.Module):
    """Word, segment and position embeddings, summed in transformers' order, then layer norm."""

    def __init__(self, config: dict):
        super().__init__()
        hidden = config["hidden_size"]
        self.word_embeddings = nn.Embedding(config["vocab_size"], hidden)
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], hidden)
        self.token_type_embeddings = nn.Embedding(config["type_vocab_size"], hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=config["layer_norm_eps"])

    def forward(self, input_ids, token_type_ids):
        x = self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
        x = x + self.position_embeddings.weight[: input_ids.shape[1]][None]
        return self.LayerNorm(x)


class SelfAttention(nn.Module):
    """Multi-head attention over the block's input; `mask` (True: attend) or None when nothing is padded."""

    def __init__(self, config: dict):
        super().__init__()
        hidden = config["hidden_size"]
        self.heads = config["num_attention_heads"]
        self.query, self.key, self.value = (
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, hidden),
        )

    def forward(self, x, mask):
        shape = (*x.shape[:-1], self.heads, -1)

        def heads(layer):
            return layer(x).view(shape).transpose(1, 2)

        out = F.scaled_dot_product_attention(heads(self.query), heads(self.key), heads(self.value), attn_mask=mask)
        return out.transpose(1, 2).reshape(*x.shape[:-1], -1)


class Residual(nn.Module):
    """A product, then layer norm of it plus the block's input (BERT's `…output`); dropout only in training."""

    def __init__(self, inner: int, hidden: int, eps: float, dropout: float = 0.0):
        super().__init__()
        self.dense = nn.Linear(inner, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, hidden, inputs):
        return self.LayerNorm(self.dropout(self.dense(hidden)) + inputs)


class Attention(nn.Module):
    """Self-attention, then its output product and the residual layer norm (BERT's `attention`)."""

    def __init__(self, config: dict, dropout: float = 0.0):
        super().__init__()
        self.self = SelfAttention(config)
        self.output = Residual(config["hidden_size"], config["hidden_size"], config["layer_norm_eps"], dropout)

    def forward(self, x, mask):
        return self.output(self.self(x, mask), x)


class Intermediate(nn.Module):
    """The feed-forward input product and its exact GELU (`intermediate_act_fn`, the name the int8 split looks for)."""

    def __init__(self, config: dict):
        super().__init__()
        self.dense = nn.Linear(config["hidden_size"], config["intermediate_size"])
        self.intermediate_act_fn = nn.GELU()

    def forward(self, x):
        return self.intermediate_act_fn(self.dense(x))


class Layer(nn.Module):
    """One encoder layer (post-layer-norm): also the reader's (rag.answer.marker), which trains with `dropout`."""

    def __init__(self, config: dict, dropout: float = 0.0):
        super().__init__()
        self.attention = Attention(config, dropout)
        self.intermediate = Intermediate(config)
        self.output = Residual(config["intermediate_size"], config["hidden_size"], config["layer_norm_eps"], dropout)

    def forward(self, x, mask):
        x = self.attention(x, mask)
        return self.output(self.intermediate(x), x)


class Encoder(nn.Module):
    """The stack of layers, under transformers' name (`encoder.layer.N`)."""

    def __init__(self, config: dict):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config["num_hidden_layers"]))


def load_part(module: nn.Module, weights: dict, prefix: str) -> nn.Module:
    """`module` with the weights under `prefix` ("encoder.layer.3.") of a BERT's state dict."""
    module.load_state_dict({key: weights[prefix + key] for key in module.state_dict()})
    return module


def read_config(folder: str | Path) -> dict:
    """The model folder's config.json."""
    return json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))


class BertEncoder(nn.Module):
    """A BERT with mean pooling, with the parts of `SentenceTransformer` that `rag.embed.embedder` uses:
    `tokenizer`, `max_seq_length`, `get_embedding_dimension`, `preprocess`, a forward pass that returns
    `sentence_embedding`, and `encode` (the int8 calibration's)."""

    def __init__(self, folder: str | Path):
        super().__init__()
        from safetensors.torch import load_file

        root = Path(folder)
        config = read_config(root)
        self.max_seq_length = int(_sentence_config(root).get("max_seq_length") or config["max_position_embeddings"])
        self.tokenizer = Tokens(root / "tokenizer.json", self.max_seq_length)
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        weights = {k.removeprefix("bert."): v for k, v in load_file(str(root / "model.safetensors")).items()}
        wanted = self.state_dict().keys()
        missing = sorted(set(wanted) - set(weights))
        if missing:
            raise ValueError(f"{root / 'model.safetensors'} lacks {', '.join(missing[:3])}")
        self.load_state_dict({k: weights[k] for k in wanted})
        self.eval()

    def get_embedding_dimension(self) -> int:
        return self.embeddings.word_embeddings.embedding_dim

    def preprocess(self, texts: Sequence[str]) -> dict:
        return self.tokenizer.features(texts)

    def forward(self, features: dict) -> dict:
        mask = features["attention_mask"]
        keep = None if bool(mask.all()) else mask.bool()[:, None, None, :]  # no padding: SDPA's unmasked kernel
        x = self.embeddings(features["input_ids"], features["token_type_ids"])
        for layer in self.encoder.layer:
            x = layer(x, keep)
        weights = mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return {"token_embeddings": x, "sentence_embedding": F.normalize(pooled, p=2, dim=1)}

    def encode(self, texts: Sequence[str], batch_size: int = 32, show_progress_bar: bool = False) -> np.ndarray:
        """Unit-length vectors of `texts`, in batches of `batch_size` in the order given."""
        parts = []
        with torch.inference_mode():
            for at in range(0, len(texts), batch_size):
                parts.append(self(self.preprocess(texts[at : at + batch_size]))["sentence_embedding"].float().numpy())
        return np.vstack(parts) if parts else np.zeros((0, self.get_embedding_dimension()), np.float32)
