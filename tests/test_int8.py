"""rag.embed.int8: the layer surgery of the int8 recipe keeps a BERT block the same function (no model loaded)."""

from __future__ import annotations


def test_splitting_the_feed_forward_keeps_a_bert_block_the_same_function():
    import torch
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertEncoder

    from rag.embed.int8 import _smooth, _split_outliers

    torch.manual_seed(0)
    model = torch.nn.Module()
    model.encoder = BertEncoder(
        BertConfig(hidden_size=8, intermediate_size=16, num_attention_heads=2, num_hidden_layers=1)
    )
    model.eval()
    inputs = torch.randn(3, 5, 8)
    path, intermediate = "encoder.layer.0.output.dense", "encoder.layer.0.intermediate"
    with torch.no_grad():
        before = model.encoder(inputs).last_hidden_state
        hidden = model.encoder.layer[0].intermediate(inputs)
        peaks = {
            path: hidden.abs().reshape(-1, 16).amax(0),
            f"{intermediate}.dense": inputs.abs().reshape(-1, 8).amax(0),
        }
        _smooth(model, [f"{intermediate}.dense"], peaks)  # the input layer is smoothed first, as in int8
        assert _split_outliers(model, [path], peaks, 3) == [path]
        main, outliers = model.encoder.layer[0].intermediate(inputs)
        assert main.shape[-1] == 13 and outliers.shape[-1] == 3
        assert torch.allclose(
            outliers.abs().reshape(-1, 3).amax(0).sort().values, peaks[path].topk(3).values.sort().values
        )
        assert torch.allclose(model.encoder(inputs).last_hidden_state, before, atol=1e-5)
