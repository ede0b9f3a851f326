"""Which arithmetic an index is built in and asked in: the one home of that decision.

`auto` is bfloat16 where the CPU does it natively (AVX512-BF16 or AMX), else int8 where it has AVX2, else
float32, read from the CPU flags (no benchmark at start-up). An index keeps the arithmetic it was built in:
a build extends it in its own arithmetic, questions are embedded in it, and vectors of two arithmetics
only share an index when they agree (float32 and bfloat16 do; int8 only with int8 of the same recipe).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rag.embed import int8

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
    cosine of 0.9999 (tests/test_embedder.py); int8 vectors (about 0.99) only go with int8 ones."""
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


def vector_recipe(precision: str) -> str:
    """What besides the precision decides its vectors: the shipped int8 recipe's name for int8, else ""."""
    return int8.INT8.name() if precision == "int8" else ""


def for_build(
    asked: str, indexed: str | None = None, indexed_recipe: str = "", flags: Iterable[str] | None = None
) -> tuple[Arithmetic, list[str]]:
    """The arithmetic a build embeds in, and why the index's vectors (of precision `indexed`, int8 recipe
    `indexed_recipe`) cannot be kept beside the new ones: [] when they can, else a rebuild in full embeds
    in a fresh choice. `auto` extends an index in its own arithmetic rather than mixing vectors."""
    chosen = choose_arithmetic(asked, flags)
    if indexed is None:
        return chosen, []
    kept = build_arithmetic(asked, indexed, flags)
    if not compatible(indexed, kept.precision):
        return chosen, [f"arithmetic: index has {indexed}, RAG_PRECISION asks for {kept.precision}"]
    if kept.precision == indexed == "int8" and indexed_recipe != vector_recipe("int8"):
        return chosen, [
            f"int8 recipe: index has {indexed_recipe or 'none recorded'}, this rag uses "
            f"{vector_recipe('int8')} (vectors of two recipes differ by more than a cosine of 0.999)"
        ]
    return kept, []
