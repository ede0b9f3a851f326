"""bfloat16 linear layers for CPUs that do bfloat16 natively: weights made bfloat16 once, packed into
oneDNN's own layout where this PyTorch and CPU can (layer norms, softmax and pooling stay float32)."""

from __future__ import annotations

import functools


def bfloat16_linears(model) -> None:
    """Make the model's linear layers bfloat16 in place, once, for use under bfloat16 autocast (which would
    otherwise cast their weights on every call; layer norms, softmax and pooling stay float32): weights packed
    once into oneDNN's own layout where this PyTorch and CPU can (see `_packed_linear`), else cast to bfloat16."""
    import torch

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                try:
                    setattr(parent, name, _packed_linear()(child))
                except (RuntimeError, AttributeError, NotImplementedError):  # no oneDNN bfloat16 (no AVX-512 here)
                    child.to(torch.bfloat16)


@functools.cache
def _packed_linear():
    """The module type of a packed bfloat16 layer (made on first use, so that importing rag does not import torch)."""
    import torch

    class PackedLinear(torch.nn.Module):
        """A bfloat16 linear layer whose weight oneDNN reordered once into its blocked layout: the products of
        `nn.Linear` in bfloat16 (bit for bit but for an accumulation order now and then) without the reorder each
        call makes otherwise, most of a small product's time."""

        def __init__(self, linear):
            super().__init__()
            self.in_features, self.out_features = linear.in_features, linear.out_features
            weight = linear.weight.detach().to(torch.bfloat16).contiguous()
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)  # plain attributes: .to() leaves them
            self.bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16).contiguous()
            self(torch.zeros(1, self.in_features))  # where oneDNN cannot run it, fail now, not at the first question

        def forward(self, inputs):
            return torch.ops.mkldnn._linear_pointwise(inputs.to(torch.bfloat16), self.packed, self.bias, "none", [], "")

        def extra_repr(self):
            return f"in_features={self.in_features}, out_features={self.out_features}, bfloat16 packed by oneDNN"

    return PackedLinear
