"""rag.embed.arithmetic: which arithmetic an index is built and asked in (pure: CPU flags in, choices out)."""

from __future__ import annotations

import pytest

from rag.config import DEFAULT_MODEL
from rag.embed.arithmetic import (
    build_arithmetic,
    choose_arithmetic,
    compatible,
    cpu_flags,
    for_build,
    query_arithmetic,
    resolve_precision,
    vector_recipe,
)
from rag.embed.embedder import load_embedder


def test_precision_is_named_and_explicit_choices_are_kept():
    for asked in ("float32", "bfloat16", "int8"):
        assert resolve_precision(asked) == asked
        assert choose_arithmetic(asked, set()).describe() == f"{asked}, set by RAG_PRECISION"
    assert resolve_precision("auto") in ("float32", "bfloat16", "int8")


# /proc/cpuinfo flags of real CPUs (trimmed to what matters)
SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8"}
COOPER_LAKE = {"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}
CASCADE_LAKE = {"avx2", "avx512f", "avx512_vnni"}
EPYC_ZEN3 = {"avx2", "fma", "sse4_2"}
OLD_ATOM = {"sse4_2"}


@pytest.mark.parametrize(
    "flags, precision, reason",
    [
        (SAPPHIRE_RAPIDS, "bfloat16", "auto: bfloat16, native on this CPU (AMX, AVX512-BF16)"),
        (COOPER_LAKE, "bfloat16", "auto: bfloat16, native on this CPU (AVX512-BF16)"),
        (CASCADE_LAKE, "int8", "auto: int8, no native bfloat16 on this CPU"),
        (EPYC_ZEN3, "int8", "auto: int8, no native bfloat16 on this CPU"),
        (OLD_ATOM, "float32", "auto: float32, no native bfloat16 and no AVX2 for int8 on this CPU"),
        (set(), "float32", "auto: float32, no native bfloat16 and no AVX2 for int8 on this CPU"),
    ],
)
def test_auto_chooses_by_the_cpu_flags(flags, precision, reason):
    chosen = choose_arithmetic("auto", flags)
    assert (chosen.precision, chosen.describe()) == (precision, reason)
    assert resolve_precision("auto", flags) == precision


def test_cpu_flags_are_read_from_cpuinfo_and_onednn_limits_take_bfloat16_away(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16 amx_tile\n\n"
        "processor\t: 1\nflags\t\t: fpu avx2 avx512_bf16 amx_bf16 amx_tile\n"
    )
    assert cpu_flags(cpuinfo, {}) == {"fpu", "avx2", "avx512_bf16", "amx_bf16", "amx_tile"}
    limited = cpu_flags(cpuinfo, {"ONEDNN_MAX_CPU_ISA": "avx2"})
    assert limited == {"fpu", "avx2", "amx_tile"} and choose_arithmetic("auto", limited).precision == "int8"
    assert cpu_flags(cpuinfo, {"DNNL_MAX_CPU_ISA": "AVX512_CORE_AMX"}) == cpu_flags(cpuinfo, {})
    assert cpu_flags(tmp_path / "missing", {}) == frozenset()


def test_only_float32_and_bfloat16_vectors_share_an_index():
    assert compatible("float32", "bfloat16") and compatible("bfloat16", "float32") and compatible("int8", "int8")
    assert not compatible("int8", "float32") and not compatible("bfloat16", "int8")


@pytest.mark.parametrize(
    "asked, indexed, flags, expected",
    [
        ("auto", None, EPYC_ZEN3, "int8"),
        ("auto", "int8", SAPPHIRE_RAPIDS, "int8"),  # auto extends an index in its own arithmetic
        ("auto", "bfloat16", EPYC_ZEN3, "float32"),  # ... or a compatible one this CPU runs fast
        ("auto", "float32", SAPPHIRE_RAPIDS, "bfloat16"),
        ("float32", "int8", EPYC_ZEN3, "float32"),  # an explicit choice is kept (the index is rebuilt)
    ],
)
def test_a_build_continues_an_index_in_its_arithmetic_unless_told_otherwise(asked, indexed, flags, expected):
    assert build_arithmetic(asked, indexed, flags).precision == expected


@pytest.mark.parametrize(
    "indexed, flags, expected",
    [
        ("int8", SAPPHIRE_RAPIDS, "int8"),
        ("float32", SAPPHIRE_RAPIDS, "float32"),
        ("bfloat16", SAPPHIRE_RAPIDS, "bfloat16"),
        ("bfloat16", EPYC_ZEN3, "float32"),  # proven compatible: see test_bfloat16_vectors_agree_with_float32
    ],
)
def test_questions_are_embedded_in_the_index_arithmetic(indexed, flags, expected):
    assert query_arithmetic(indexed, flags).precision == expected


def test_bad_rag_precision_stops_loading_with_its_fix(monkeypatch):
    from rag.errors import ConfigError

    monkeypatch.setenv("RAG_PRECISION", "half")
    with pytest.raises(ConfigError, match="RAG_PRECISION"):
        load_embedder(DEFAULT_MODEL)


SPLIT = vector_recipe("int8")


@pytest.mark.parametrize(
    "asked, indexed, recipe, flags, expected, why",
    [
        ("auto", None, "", SAPPHIRE_RAPIDS, "bfloat16", []),
        # float32 and bfloat16 vectors agree and share an index; int8 ones only with int8 of the same recipe
        ("float32", "float32", "", SAPPHIRE_RAPIDS, "float32", []),
        ("bfloat16", "float32", "", SAPPHIRE_RAPIDS, "bfloat16", []),
        ("float32", "bfloat16", "", EPYC_ZEN3, "float32", []),
        ("int8", "int8", SPLIT, EPYC_ZEN3, "int8", []),
        ("auto", "int8", SPLIT, SAPPHIRE_RAPIDS, "int8", []),  # auto extends the index in its own arithmetic
        ("int8", "float32", "", EPYC_ZEN3, "int8", ["arithmetic: index has float32, RAG_PRECISION asks for int8"]),
        (
            "bfloat16",
            "int8",
            SPLIT,
            SAPPHIRE_RAPIDS,
            "bfloat16",
            ["arithmetic: index has int8, RAG_PRECISION asks for bfloat16"],
        ),
        # int8 vectors of two recipes differ by more than 0.999: an index of another recipe, or of none recorded, is rebuilt
        (
            "int8",
            "int8",
            "ffn-out float32",
            EPYC_ZEN3,
            "int8",
            [
                f"int8 recipe: index has ffn-out float32, this rag uses {SPLIT} (vectors of two recipes differ by more than a cosine of 0.999)"
            ],
        ),
        (
            "auto",
            "int8",
            "",
            SAPPHIRE_RAPIDS,
            "bfloat16",
            [
                f"int8 recipe: index has none recorded, this rag uses {SPLIT} (vectors of two recipes differ by more than a cosine of 0.999)"
            ],
        ),
    ],
)
def test_a_build_keeps_the_index_arithmetic_or_says_why_it_cannot(asked, indexed, recipe, flags, expected, why):
    chosen, reasons = for_build(asked, indexed, recipe, flags)
    assert (chosen.precision, reasons) == (expected, why)
