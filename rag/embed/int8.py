"""int8 linear layers for CPUs without native bfloat16: PyTorch dynamic quantization after SmoothQuant-style
smoothing, each block's feed-forward output split so its few outlier channels stay float32."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rag.errors import ModelError


@dataclass(frozen=True)
class Int8Recipe:
    """How `int8` makes the model's linear layers 8-bit (the choices compared: docs/decisions.md).

    `ffn_output` is what happens to each block's feed-forward output layer, whose 1,536 GELU inputs hold a
    few channels with values 4-5x the rest: `float32` keeps the layer float32, `int8` quantizes it like the
    others, `split` quantizes it but for its `outliers` largest input channels, which stay float32."""

    ffn_output: str = "float32"
    outliers: int = 8
    per_channel: bool = True
    smoothing: float = 0.5

    def name(self) -> str:
        """What tells this recipe's vectors from another's, as the manifest records it: `ffn-out int8`."""
        parts = [f"ffn-out {self.ffn_output}" + (f" {self.outliers}" if self.ffn_output == "split" else "")]
        parts += [] if self.per_channel else ["per-tensor"]
        parts += [] if self.smoothing == 0.5 else [f"smoothing {self.smoothing}"]
        return ", ".join(parts)


INT8 = Int8Recipe(ffn_output="split")
"""The recipe `int8` runs: feed-forward outputs split, their 8 outlier input channels float32; the fastest of the
recipes whose vectors lose no SciFact nDCG@10 (docs/decisions.md, bench/precision.py)."""


def int8_linears(model, name: str, recipe: Int8Recipe) -> None:
    """Swap the model's linear layers for int8 ones in place: PyTorch dynamic quantization (int8 weights, per
    output channel by default; activations quantized per batch), after SmoothQuant-style smoothing."""
    import warnings

    import torch

    engines = torch.backends.quantized.supported_engines
    engine = next((e for e in ("x86", "fbgemm", "qnnpack") if e in engines), None)
    if engine is None:
        raise ModelError(
            f"this PyTorch has no int8 engine (it offers {', '.join(engines)}) to run {name!r} in int8; "
            f"set RAG_PRECISION=float32 and run `rag build --full`"
        )
    torch.backends.quantized.engine = engine
    linears = [path for path, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
    ffn_outputs = [path for path in linears if _is_ffn_output(path)]
    smoothed = [path for path in linears if path not in ffn_outputs]
    peaks = _input_peaks(model, linears)
    _smooth(model, smoothed, peaks, recipe.smoothing)
    quantized = [f"{path}.linear" if recipe.smoothing else path for path in smoothed]
    if recipe.ffn_output == "int8":
        quantized += ffn_outputs
    elif recipe.ffn_output == "split":
        quantized += [f"{path}.linear" for path in _split_outliers(model, ffn_outputs, peaks, recipe.outliers)]
    with warnings.catch_warnings():  # torch.ao.quantization warns of its move to torchao; it still ships
        warnings.simplefilter("ignore")
        from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

        qconfig = per_channel_dynamic_qconfig if recipe.per_channel else default_dynamic_qconfig
        quantize_dynamic(model, dict.fromkeys(quantized, qconfig), dtype=torch.qint8, inplace=True)


def _is_ffn_output(path: str) -> bool:
    """True for a block's feed-forward output layer (BERT's `layer.N.output.dense`)."""
    return path.endswith(FFN_OUTPUT) and ".attention." not in path


FFN_OUTPUT = "output.dense"
"""The name ending of each block's feed-forward output layer (input: 1,536 GELU activations), whose few
large channels int8 cannot hold: it is split rather than quantized whole (docs/decisions.md)."""
SMOOTHING = 0.5
"""SmoothQuant's alpha: how much of an input channel's activation range moves into its weights."""
CALIBRATION = [
    "The quick brown fox jumps over the lazy dog.",
    "When did the Russian military operation in Syria start?",
    "Mitochondria are the powerhouse of the cell, producing most of its ATP.",
    "Descale the kettle every four weeks with white vinegar.",
    "In 1998 the company reported revenue of 4.2 billion dollars, up 12 % on the year before.",
    "x",
    "Chapter 3: Results",
    "def main(argv=None) -> int:",
    "Patients (n = 312) received 20 mg daily for six weeks.",
]
"""Fixed texts whose activations set the smoothing scales, so every process computes the same int8 model."""


def _input_peaks(model, layers: list[str]):
    """The largest |input| each layer's input channels see over CALIBRATION, in float32."""
    import torch

    modules = dict(model.named_modules())
    peaks: dict = {}

    def record(path):
        def hook(module, inputs, output):
            seen = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0)
            peaks[path] = torch.maximum(peaks[path], seen) if path in peaks else seen

        return hook

    hooks = [modules[path].register_forward_hook(record(path)) for path in layers]
    try:
        with torch.inference_mode():
            model.encode(CALIBRATION, batch_size=len(CALIBRATION), show_progress_bar=False)
    finally:
        for hook in hooks:
            hook.remove()
    return peaks


def _smooth(model, layers: list[str], peaks, alpha: float = SMOOTHING) -> None:
    """Divide each layer's inputs by s and multiply its weights by s (the same product), s = a^α / w^(1-α)
    per input channel, so that int8 activations lose less to the few channels with large values."""
    import torch

    if not alpha:
        return
    modules = dict(model.named_modules())
    for path in layers:
        parent_path, _, child = path.rpartition(".")
        linear = modules[path]
        weight_peak = linear.weight.detach().abs().amax(0).clamp(min=1e-5)
        scale = (peaks[path].clamp(min=1e-5) ** alpha / weight_peak ** (1 - alpha)).clamp(min=1e-5)
        with torch.no_grad():
            linear.weight.mul_(scale)
        setattr(modules[parent_path], child, _smoothed_linear()(linear, 1.0 / scale))


@functools.cache
def _smoothed_linear():
    """The module type of a smoothed layer (made on first use, so that importing rag does not import torch)."""
    import torch

    class SmoothedLinear(torch.nn.Module):
        """A linear layer whose input is first multiplied by `inverse_scale`, channel by channel."""

        def __init__(self, linear, inverse_scale):
            super().__init__()
            self.linear = linear
            self.register_buffer("inverse_scale", inverse_scale)

        def forward(self, inputs):
            return self.linear(inputs * self.inverse_scale)

    return SmoothedLinear


def _split_outliers(model, ffn_outputs: list[str], peaks, count: int) -> list[str]:
    """Split each block's feed-forward in two: the `count` hidden channels of largest peak go through a float32
    branch of their own, the rest through the (to be quantized) input and output layers, so that int8 never sees
    those channels' values. Returns the output layers split (those of blocks shaped like BERT's)."""
    import torch

    modules = dict(model.named_modules())
    split = []
    for path in ffn_outputs:
        block = path.rsplit(".", 2)[0]  # "…layer.N" of "…layer.N.output.dense"
        intermediate = modules.get(f"{block}.intermediate")
        if intermediate is None or not hasattr(intermediate, "intermediate_act_fn"):
            continue
        ffn_input, ffn_output = intermediate.dense, modules[path]
        inner = getattr(ffn_input, "linear", ffn_input)
        unsmooth = getattr(ffn_input, "inverse_scale", torch.ones(inner.in_features))
        outliers = peaks[path].topk(count).indices
        kept = torch.ones(ffn_output.in_features, dtype=torch.bool)
        kept[outliers] = False
        with torch.no_grad():
            main_input = torch.nn.Linear(inner.in_features, int(kept.sum()))
            main_input.weight.copy_(inner.weight[kept])
            main_input.bias.copy_(inner.bias[kept])
            main_output = torch.nn.Linear(int(kept.sum()), ffn_output.out_features)
            main_output.weight.copy_(ffn_output.weight[:, kept])
            main_output.bias.copy_(ffn_output.bias)
        if inner is ffn_input:
            intermediate.dense = main_input
        else:
            ffn_input.linear = main_input
        branch = (
            inner.weight[outliers].detach() * unsmooth,
            inner.bias[outliers].detach(),
            ffn_output.weight[:, outliers].detach(),
        )
        modules[block].intermediate = _split_modules()[0](intermediate, *branch[:2])
        modules[f"{block}.output"].dense = _split_modules()[1](main_output, branch[2].contiguous())
        split.append(path)
    return split


@functools.cache
def _split_modules():
    """The module types of a split feed-forward (made on first use, so that importing rag does not import torch)."""
    import torch

    class SplitIntermediate(torch.nn.Module):
        """The feed-forward input: (activation of `dense`, activation of the float32 outlier channels)."""

        def __init__(self, intermediate, weight, bias):
            super().__init__()
            self.dense = intermediate.dense
            self.intermediate_act_fn = intermediate.intermediate_act_fn
            self.register_buffer("outlier_weight", weight.contiguous())
            self.register_buffer("outlier_bias", bias.contiguous())

        def forward(self, inputs):
            outliers = torch.nn.functional.linear(inputs, self.outlier_weight, self.outlier_bias)
            return self.intermediate_act_fn(self.dense(inputs)), self.intermediate_act_fn(outliers)

    class SplitLinear(torch.nn.Module):
        """The feed-forward output: `linear` of the main channels plus a float32 product of the outlier ones."""

        def __init__(self, linear, outlier_weight):
            super().__init__()
            self.linear = linear
            self.register_buffer("outlier_weight", outlier_weight)

        def forward(self, hidden):
            main, outliers = hidden
            return self.linear(main) + torch.nn.functional.linear(outliers, self.outlier_weight)

    return SplitIntermediate, SplitLinear
