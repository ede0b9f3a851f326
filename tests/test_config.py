"""rag.config: defaults, then RAG_* environment variables, then explicit overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from rag.config import DEFAULT_MODEL, Settings
from rag.errors import ConfigError

DEFAULTS = {
    "corpus": Path("seeds"),
    "index": Path("indexes"),
    "model": DEFAULT_MODEL,
    "batch_size": 32,
    "max_tokens": 0,
    "overlap": 1,
    "candidates": 30,
    "hybrid": True,
    "fusion": "convex",
    "dense_weight": 0.7,
    "sentence_scoring": True,
    "precision": "auto",
    "cross_encoder": "",
    "quote_context": 1,
    "quote_chars": 600,
    "max_quotes": 3,
    "min_score": -1.0,  # negative: the threshold calibrated in rag/models/answer_model.json
    "max_file_bytes": 20_000_000,
    "max_upload_bytes": 5_000_000,
    "host": "127.0.0.1",
    "port": 7860,
    "auth": "",
    "auth_file": "",
    "lock_timeout": 600.0,
    "extensions": (
        ".txt",
        ".md",
        ".pdf",
        ".docx",
        ".html",
        ".htm",
        ".pptx",
        ".xlsx",
        ".csv",
        ".tsv",
        ".epub",
        ".eml",
        ".mbox",
        ".srt",
        ".vtt",
        ".png",
        ".jpg",
        ".jpeg",
        ".tif",
        ".tiff",
    ),
    "extract_timeout": 60.0,
    "ocr": "auto",
    "ocr_pages": 500,
}
FIELDS = [f.name for f in dataclasses.fields(Settings)]


@pytest.mark.parametrize("field, value", DEFAULTS.items())
def test_defaults(field, value):
    got = getattr(Settings(), field)
    assert got == value and type(got) is type(value)


def test_default_model_is_the_bundled_one():
    assert DEFAULT_MODEL == "all-MiniLM-L6-v2"


def test_from_empty_env_is_defaults():
    assert Settings.from_env({}) == Settings()


@pytest.mark.parametrize(
    "variable, raw, field, value",
    [
        # bool words, any case, surrounding spaces allowed
        ("RAG_HYBRID", "0", "hybrid", False),
        ("RAG_HYBRID", "false", "hybrid", False),
        ("RAG_HYBRID", "No", "hybrid", False),
        ("RAG_HYBRID", "OFF", "hybrid", False),
        ("RAG_HYBRID", " off ", "hybrid", False),
        ("RAG_SENTENCE_SCORING", "1", "sentence_scoring", True),
        ("RAG_SENTENCE_SCORING", "True", "sentence_scoring", True),
        ("RAG_SENTENCE_SCORING", "yes", "sentence_scoring", True),
        ("RAG_SENTENCE_SCORING", "on", "sentence_scoring", True),
        # int
        ("RAG_BATCH_SIZE", "64", "batch_size", 64),
        ("RAG_BATCH_SIZE", " 8 ", "batch_size", 8),
        ("RAG_MAX_TOKENS", "128", "max_tokens", 128),
        ("RAG_OVERLAP", "0", "overlap", 0),
        ("RAG_MAX_FILE_BYTES", "1_000", "max_file_bytes", 1000),
        ("RAG_PORT", "8080", "port", 8080),
        # float
        ("RAG_MIN_SCORE", "0.25", "min_score", 0.25),
        ("RAG_MIN_SCORE", "1e-1", "min_score", 0.1),
        ("RAG_LOCK_TIMEOUT", "30", "lock_timeout", 30.0),
        # Path
        ("RAG_CORPUS", "/data/docs", "corpus", Path("/data/docs")),
        ("RAG_INDEX", "rel/idx", "index", Path("rel/idx")),
        # str
        ("RAG_MODEL", "/models/my model", "model", "/models/my model"),
        ("RAG_HOST", "0.0.0.0", "host", "0.0.0.0"),
        ("RAG_CROSS_ENCODER", "models/ce", "cross_encoder", "models/ce"),
        # tuple of comma-separated parts, blanks dropped
        ("RAG_EXTENSIONS", ".txt", "extensions", (".txt",)),
        ("RAG_EXTENSIONS", ".txt, .md ,,.rst ", "extensions", (".txt", ".md", ".rst")),
        ("RAG_EXTENSIONS", " , ", "extensions", ()),
    ],
)
def test_env_override_parsed_by_type(variable, raw, field, value):
    settings = Settings.from_env({variable: raw})
    got = getattr(settings, field)
    assert got == value and type(got) is type(value)
    assert settings == Settings().replace(**{field: value})


def test_env_empty_string_means_unset():
    assert Settings.from_env({"RAG_BATCH_SIZE": "", "RAG_HYBRID": "", "RAG_CORPUS": ""}) == Settings()


def test_env_unknown_and_unprefixed_variables_ignored():
    env = {"RAG_UNKNOWN": "x", "BATCH_SIZE": "1", "rag_batch_size": "2", "RAG_batch_size": "3"}
    assert Settings.from_env(env) == Settings()


def test_env_several_at_once():
    env = {"RAG_PORT": "9000", "RAG_HYBRID": "no", "RAG_CORPUS": "docs", "PATH": "/bin"}
    assert Settings.from_env(env) == Settings(port=9000, hybrid=False, corpus=Path("docs"))


def test_process_environment_is_read_when_none_given(monkeypatch):
    monkeypatch.setenv("RAG_MAX_QUOTES", "5")
    monkeypatch.setenv("RAG_MODEL", "from-env")
    settings = Settings.from_env()
    assert (settings.max_quotes, settings.model) == (5, "from-env")


def test_given_environ_replaces_process_environment(monkeypatch):
    monkeypatch.setenv("RAG_MAX_QUOTES", "5")
    assert Settings.from_env({}).max_quotes == 3


@pytest.mark.parametrize(
    "env, overrides, expected",
    [
        ({"RAG_PORT": "9000"}, {"port": 9100}, {"port": 9100}),
        ({"RAG_PORT": "9000"}, {"port": None}, {"port": 9000}),  # None means "flag not given"
        ({}, {"port": None, "model": None}, {}),
        ({"RAG_HYBRID": "yes"}, {"hybrid": False}, {"hybrid": False}),  # False is a value, not "unset"
        ({"RAG_OVERLAP": "2"}, {"overlap": 0}, {"overlap": 0}),  # 0 too
        ({"RAG_MODEL": "env-model"}, {"model": ""}, {"model": ""}),
        ({"RAG_CORPUS": "env"}, {"corpus": "flag"}, {"corpus": Path("flag")}),  # str flag becomes a Path
        ({}, {"index": "idx"}, {"index": Path("idx")}),
        ({"RAG_INDEX": "env"}, {"index": None}, {"index": Path("env")}),
        ({"RAG_EXTENSIONS": ".rst"}, {"extensions": (".txt",)}, {"extensions": (".txt",)}),
    ],
)
def test_explicit_overrides_win(env, overrides, expected):
    assert Settings.from_env(env, **overrides) == Settings().replace(**expected)


@pytest.mark.parametrize(
    "variable, raw, kind",
    [
        ("RAG_BATCH_SIZE", "many", "int"),
        ("RAG_BATCH_SIZE", "3.5", "int"),
        ("RAG_PORT", "80a", "int"),
        ("RAG_MIN_SCORE", "high", "float"),
        ("RAG_LOCK_TIMEOUT", "10s", "float"),
        ("RAG_HYBRID", "maybe", "bool"),
        ("RAG_HYBRID", "2", "bool"),
        ("RAG_SENTENCE_SCORING", "y", "bool"),
    ],
)
def test_bad_value_names_the_variable(variable, raw, kind):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: raw})
    message = str(error.value)
    assert f"{variable}={raw!r}" in message
    assert f"not a valid {kind}" in message
    assert "unset" in message


def test_bad_env_value_is_an_error_even_when_a_flag_overrides_it():
    with pytest.raises(ConfigError, match="RAG_BATCH_SIZE"):
        Settings.from_env({"RAG_BATCH_SIZE": "nonsense"}, batch_size=8)


def env_text(value) -> str:
    """How a user would write `value` in the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


@pytest.mark.parametrize("field", FIELDS)
def test_every_field_round_trips_through_env(field):
    """Each field's type is one the parser knows: writing a value back reads the same value."""
    default = getattr(Settings(), field)
    value = default if default != "" else "some text"  # "" in the environment means unset
    settings = Settings.from_env({f"RAG_{field.upper()}": env_text(value)})
    assert getattr(settings, field) == value
    assert type(getattr(settings, field)) is type(value)


def test_replace_is_a_copy():
    original = Settings()
    changed = original.replace(port=1, corpus=Path("x"))
    assert (changed.port, changed.corpus) == (1, Path("x"))
    assert original == Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        original.port = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "auto"),
        ("", "auto"),
        ("auto", "auto"),
        ("float32", "float32"),
        (" BFloat16 ", "bfloat16"),
        ("INT8", "int8"),
    ],
)
def test_precision_from_env(raw, expected):
    from rag.config import precision

    assert precision({} if raw is None else {"RAG_PRECISION": raw}) == expected


def test_bad_precision_names_the_variable_and_the_choices():
    from rag.config import precision

    for bad in ("fp8", "int4", "float16"):
        with pytest.raises(
            ConfigError,
            match=rf"'{bad}' \(RAG_PRECISION\) is not one of auto, float32, bfloat16, int8; fix or unset it",
        ):
            precision({"RAG_PRECISION": bad})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"RAG_FUSION": "sum"}, r"fusion 'sum' \(RAG_FUSION\) is not one of convex, rrf"),
        ({"RAG_DENSE_WEIGHT": "1.5"}, r"dense_weight 1.5 \(RAG_DENSE_WEIGHT\) must be between 0"),
        ({"RAG_DENSE_WEIGHT": "-0.1"}, r"dense_weight -0.1 \(RAG_DENSE_WEIGHT\) must be between 0"),
    ],
)
def test_out_of_range_fusion_settings_are_refused_with_the_fix(environ, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(environ)


@pytest.mark.parametrize("weight", ["0", "1", "0.35"])
def test_dense_weight_accepts_the_whole_range(weight):
    assert Settings.from_env({"RAG_DENSE_WEIGHT": weight, "RAG_FUSION": "rrf"}).dense_weight == float(weight)


@pytest.mark.parametrize(
    "variable, raw, expected",
    [
        ("RAG_CANDIDATES", "0", "candidates 0 (RAG_CANDIDATES) must be at least 1"),
        ("RAG_MAX_QUOTES", "0", "max_quotes 0 (RAG_MAX_QUOTES) must be at least 1"),
        ("RAG_BATCH_SIZE", "-3", "batch_size -3 (RAG_BATCH_SIZE) must be at least 1"),
        ("RAG_MAX_TOKENS", "-1", "max_tokens -1 (RAG_MAX_TOKENS) must be at least 0"),
        ("RAG_OVERLAP", "-1", "overlap -1 (RAG_OVERLAP) must be at least 0"),
        ("RAG_QUOTE_CHARS", "0", "quote_chars 0 (RAG_QUOTE_CHARS) must be at least 1"),
        ("RAG_DENSE_WEIGHT", "1.5", "dense_weight 1.5 (RAG_DENSE_WEIGHT) must be between 0.0 and 1.0"),
        ("RAG_DENSE_WEIGHT", "-0.1", "dense_weight -0.1 (RAG_DENSE_WEIGHT) must be between 0.0 and 1.0"),
        ("RAG_PORT", "70000", "port 70000 (RAG_PORT) must be between 1 and 65535"),
        ("RAG_PORT", "0", "port 0 (RAG_PORT) must be between 1 and 65535"),
        ("RAG_MAX_FILE_BYTES", "0", "max_file_bytes 0 (RAG_MAX_FILE_BYTES) must be at least 1"),
        ("RAG_FUSION", "sum", "fusion 'sum' (RAG_FUSION) is not one of convex, rrf"),
        ("RAG_PRECISION", "fp8", "precision 'fp8' (RAG_PRECISION) is not one of auto, float32, bfloat16, int8"),
    ],
)
def test_values_out_of_range_are_refused_at_load_naming_the_variable(variable, raw, expected):
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: raw})
    assert str(error.value).startswith(expected) and "fix or unset it" in str(error.value)


@pytest.mark.parametrize(
    "field, value",
    [
        ("candidates", 1),
        ("dense_weight", 0.0),
        ("dense_weight", 1.0),
        ("overlap", 0),
        ("port", 1),
        ("port", 65535),
        ("precision", "bfloat16"),
    ],
)
def test_values_at_the_edges_of_their_range_are_kept(field, value):
    assert getattr(Settings().replace(**{field: value}), field) == value


def test_every_setting_belongs_to_one_stage_and_the_stages_cover_them_all():
    from rag.config import STAGES

    settings = Settings()
    groups = [settings.stage(name) for name in STAGES]
    assert all(groups)
    assert sorted(name for group in groups for name in group) == sorted(FIELDS)
    assert "candidates" in settings.stage("retrieval") and "sentence_scoring" in settings.stage("answer")
    with pytest.raises(ConfigError, match="no settings stage 'search'"):
        settings.stage("search")


def test_the_readme_documents_every_setting():
    """Each field has a row in README.md's configuration table, so the README stays true."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert "## Configuration" in readme
    documented = set(re.findall(r"`RAG_([A-Z_]+)`", readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]))
    missing = sorted(f"RAG_{name.upper()}" for name in FIELDS if name.upper() not in documented)
    assert not missing, f"README.md's Configuration table lacks {', '.join(missing)}"
