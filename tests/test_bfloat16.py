"""rag.embed.bfloat16: packed bfloat16 layers compute what bfloat16 linear layers do (no model loaded)."""

from __future__ import annotations

import pytest


def test_a_packed_bfloat16_layer_computes_what_a_bfloat16_linear_layer_does():
    import copy

    import torch

    from rag.embed.bfloat16 import bfloat16_linears

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(384, 1536), torch.nn.GELU(), torch.nn.Linear(1536, 384))
    plain = copy.deepcopy(model)
    plain[0].to(torch.bfloat16), plain[2].to(torch.bfloat16)
    bfloat16_linears(model)
    if any(isinstance(m, torch.nn.Linear) for m in model):
        pytest.skip("oneDNN cannot pack bfloat16 on this CPU: the layers were cast instead")
    for rows in (1, 7, 150):  # a question's tokens to a build's batch, 2-D and 3-D
        x = torch.randn(rows, 384)
        with torch.inference_mode():  # equal but for an accumulation order now and then: one bfloat16 rounding
            packed, cast = model(x).float(), plain(x.bfloat16()).float()
            torch.testing.assert_close(packed, cast, rtol=2**-7, atol=1e-3)
            assert (packed == cast).float().mean() > 0.99
            assert torch.equal(model(x.view(1, rows, 384)).float(), packed.view(1, rows, 384))


def test_layers_oneDNN_cannot_pack_are_cast_to_bfloat16(monkeypatch):
    import torch

    import rag.embed.bfloat16 as embedding

    def cannot(*args):
        raise RuntimeError("no bfloat16 here")

    monkeypatch.setattr(embedding, "_packed_linear", lambda: cannot)
    model = torch.nn.Sequential(torch.nn.Linear(8, 4))
    embedding.bfloat16_linears(model)
    assert isinstance(model[0], torch.nn.Linear) and model[0].weight.dtype == torch.bfloat16
