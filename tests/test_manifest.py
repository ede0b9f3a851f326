"""rag.index.manifest: what an index was built from, how it is read back, and how a corpus differs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.config import Settings
from rag.errors import IndexDamaged
from rag.index.bm25 import TOKENIZER
from rag.index.manifest import (
    FORMAT_VERSION,
    SPLITTER,
    CorpusChanges,
    FileEntry,
    Manifest,
    SegmentEntry,
    diff,
    recipe,
    recipe_hash,
)
from rag.types import Document

SHA = {k: k * 64 for k in "xyz"}  # stand-in sha256 hex digests


def entries(**files):
    """Indexed files: name=sha letter (dots written as `_`)."""
    return {name.replace("_", "."): FileEntry(SHA[sha], "utf-8", 3) for name, sha in files.items()}


def documents(*pairs):
    """Documents read now, from `(source, sha letter)` pairs."""
    return [Document(source, Path(source), "text", SHA[sha]) for source, sha in pairs]


# --- diff -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "indexed, now, expected",
    [
        pytest.param({}, [], ([], [], [], [], {}), id="nothing"),
        pytest.param({}, [("a.txt", "x")], (["a.txt"], [], [], [], {}), id="added"),
        pytest.param(entries(a_txt="x"), [("a.txt", "y")], ([], ["a.txt"], [], [], {}), id="changed"),
        pytest.param(entries(a_txt="x"), [], ([], [], ["a.txt"], [], {}), id="removed"),
        pytest.param(entries(a_txt="x"), [("a.txt", "x")], ([], [], [], ["a.txt"], {}), id="unchanged"),
        pytest.param(entries(a_txt="x"), [("b.txt", "x")], ([], [], [], [], {"b.txt": "a.txt"}), id="renamed"),
        pytest.param(
            entries(a_txt="x"), [("sub/a.txt", "x")], ([], [], [], [], {"sub/a.txt": "a.txt"}), id="moved-folder"
        ),
        pytest.param(entries(a_txt="x"), [("b.txt", "y")], (["b.txt"], [], ["a.txt"], [], {}), id="renamed-and-edited"),
        pytest.param(
            entries(a_txt="x"),
            [("a.txt", "x"), ("copy.txt", "x")],
            (["copy.txt"], [], [], ["a.txt"], {}),
            id="identical-copy-added",
        ),
        pytest.param(
            entries(a_txt="x", b_txt="x"),
            [("a.txt", "x")],
            ([], [], ["b.txt"], ["a.txt"], {}),
            id="identical-copy-removed",
        ),
        pytest.param(
            entries(a_txt="x", b_txt="x"),
            [("c.txt", "x"), ("d.txt", "x")],
            ([], [], [], [], {"c.txt": "a.txt", "d.txt": "b.txt"}),
            id="two-identical-both-moved",
        ),
        pytest.param(
            entries(a_txt="x", b_txt="x"),
            [("c.txt", "x")],
            ([], [], ["b.txt"], [], {"c.txt": "a.txt"}),
            id="two-identical-one-moved-one-gone",
        ),
        pytest.param(
            entries(a_txt="x"),
            [("c.txt", "x"), ("d.txt", "x")],
            (["d.txt"], [], [], [], {"c.txt": "a.txt"}),
            id="one-moved-plus-a-copy",
        ),
        pytest.param(
            entries(a_txt="x", b_txt="y"),
            [("a.txt", "y")],
            ([], ["a.txt"], ["b.txt"], [], {}),
            id="content-moved-onto-existing-name",
        ),
        pytest.param(
            entries(a_txt="x", b_txt="y"),
            [("a.txt", "y"), ("b.txt", "x")],
            ([], ["a.txt", "b.txt"], [], [], {}),
            id="swapped",
        ),
        pytest.param(
            entries(keep_txt="x", edit_txt="x", gone_txt="y", old_txt="z"),
            [("new.txt", "z"), ("fresh.txt", "y"), ("keep.txt", "x"), ("edit.txt", "z"), ("add.txt", "x")],
            (["add.txt"], ["edit.txt"], [], ["keep.txt"], {"new.txt": "old.txt", "fresh.txt": "gone.txt"}),
            id="mixed",
        ),
        pytest.param(
            {},
            [("z.txt", "x"), ("b.txt", "y"), ("a.txt", "z")],
            (["a.txt", "b.txt", "z.txt"], [], [], [], {}),
            id="sorted",
        ),
        pytest.param(
            entries(z_txt="x", b_txt="x", a_txt="y"),
            [],
            ([], [], ["a.txt", "b.txt", "z.txt"], [], {}),
            id="removed-sorted",
        ),
    ],
)
def test_diff(indexed, now, expected):
    changes = diff(indexed, documents(*now))
    added, changed, removed, unchanged, renamed = expected
    assert changes == CorpusChanges(added, changed, removed, unchanged, renamed)
    assert changes.any == bool(added or changed or removed or renamed)


@pytest.mark.parametrize(
    "changes, any_",
    [
        (CorpusChanges([], [], [], [], {}), False),
        (CorpusChanges([], [], [], ["a"], {}), False),
        (CorpusChanges(["a"], [], [], [], {}), True),
        (CorpusChanges([], ["a"], [], [], {}), True),
        (CorpusChanges([], [], ["a"], [], {}), True),
        (CorpusChanges([], [], [], [], {"b": "a"}), True),
    ],
)
def test_corpus_changes_any(changes, any_):
    assert changes.any is any_


# --- Manifest read / write --------------------------------------------------------------


def manifest(**changes) -> Manifest:
    fields = dict(
        model="all-MiniLM-L6-v2",
        dimension=384,
        max_tokens=256,
        overlap=1,
        files={
            "notes.md": FileEntry("a" * 64, "utf-8", 4),
            "sub/latin1.txt": FileEntry("b" * 64, "cp1252", 1),
        },
        passages=5,
        built_at="2025-01-02T03:04:05+00:00",
        tokenizer=dict(TOKENIZER),
    )
    fields.update(changes)
    return Manifest(**fields)


@pytest.mark.parametrize(
    "m",
    [
        manifest(),
        manifest(files={}, passages=0),
        manifest(index_type="hnsw", normalized=False, skipped={"empty.txt": "empty file"}),
        manifest(splitter="sentences-v0", format_version=0),
        manifest(
            precision="int8", arithmetic="auto: int8, no native bfloat16 on this CPU", int8_recipe="ffn-out split 8"
        ),
        manifest(
            segments=(SegmentEntry("s-1"), SegmentEntry("s-2", ("a.txt", "b/c.md"))),
            scanned_ns=17,
            files={"x.txt": FileEntry("d" * 64, "utf-8", 3, segment="s-2")},
            passages=3,
        ),
        manifest(model="/models/local model \u00e9", files={"caf\u00e9.txt": FileEntry("c" * 64, "utf-16", 2)}),
    ],
)
def test_manifest_round_trip(tmp_path, m):
    path = tmp_path / "manifest.json"
    path.write_text(m.to_json(), encoding="utf-8")
    read = Manifest.read(path)
    assert read == m
    assert all(isinstance(entry, FileEntry) for entry in read.files.values())
    assert Manifest.read(str(path)) == m


def test_manifest_json_is_plain_and_complete():
    raw = json.loads(manifest().to_json())
    assert raw == {
        "model": "all-MiniLM-L6-v2",
        "dimension": 384,
        "max_tokens": 256,
        "overlap": 1,
        "files": {
            "notes.md": {
                "sha256": "a" * 64,
                "encoding": "utf-8",
                "passages": 4,
                "kind": "text",
                "size": 0,
                "mtime_ns": 0,
                "segment": "",
            },
            "sub/latin1.txt": {
                "sha256": "b" * 64,
                "encoding": "cp1252",
                "passages": 1,
                "kind": "text",
                "size": 0,
                "mtime_ns": 0,
                "segment": "",
            },
        },
        "passages": 5,
        "built_at": "2025-01-02T03:04:05+00:00",
        "index_type": "flat",
        "normalized": True,
        "splitter": SPLITTER,
        "skipped": {},
        "unreadable": {},
        "not_read": {},
        "readers": {},
        "precision": "float32",
        "arithmetic": "",
        "int8_recipe": "",
        "format_version": FORMAT_VERSION,
        "tokenizer": TOKENIZER,
        "segments": [],
        "scanned_ns": 0,
    }
    assert list(raw) == sorted(raw)  # stable, diff-friendly key order


def test_manifest_read_missing(tmp_path):
    path = tmp_path / "manifest.json"
    with pytest.raises(IndexDamaged) as error:
        Manifest.read(path)
    message = str(error.value)
    assert str(path) in message and "missing" in message and "rag build --full" in message


GOOD = json.loads(manifest().to_json())


def without(key):
    return json.dumps({k: v for k, v in GOOD.items() if k != key})


def with_(**changes):
    return json.dumps({**GOOD, **changes})


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b'{"model": "m",',  # truncated write
        b"[]",
        b"null",
        b"42",
        b"\xff\xfe\x00garbage",  # not UTF-8
        b"{}",
        without("files").encode(),
        without("model").encode(),
        without("dimension").encode(),
        with_(unexpected=1).encode(),
        with_(files={"a.txt": {"sha256": "a"}}).encode(),  # entry lacks fields
        with_(files={"a.txt": {"sha256": "a", "encoding": "utf-8", "passages": 1, "x": 2}}).encode(),
        with_(files={"a.txt": ["a", "utf-8", 1]}).encode(),
    ],
)
def test_manifest_read_damaged(tmp_path, content):
    path = tmp_path / "manifest.json"
    path.write_bytes(content)
    with pytest.raises(IndexDamaged) as error:
        Manifest.read(path)
    message = str(error.value)
    assert str(path) in message and "damaged" in message and "rag build --full" in message


@pytest.mark.parametrize("files", [[], "a.txt", None])
def test_manifest_read_files_not_a_mapping(tmp_path, files):
    path = tmp_path / "manifest.json"
    path.write_text(with_(files=files), encoding="utf-8")
    with pytest.raises(IndexDamaged, match="rag build --full"):
        Manifest.read(path)


# --- mismatches -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "m, asked, found",
    [
        (manifest(), ("all-MiniLM-L6-v2", 256, 1), []),
        (
            manifest(),
            ("other-model", 256, 1),
            ["model: index has 'all-MiniLM-L6-v2', settings ask for 'other-model'"],
        ),
        (manifest(), ("all-MiniLM-L6-v2", 128, 1), ["max_tokens: index has 256, settings ask for 128"]),
        (manifest(), ("all-MiniLM-L6-v2", 256, 0), ["overlap: index has 1, settings ask for 0"]),
        (
            manifest(splitter="sentences-v0"),
            ("all-MiniLM-L6-v2", 256, 1),
            [f"sentence splitter: index has sentences-v0, this rag uses {SPLITTER}"],
        ),
        (
            manifest(format_version=FORMAT_VERSION + 1),
            ("all-MiniLM-L6-v2", 256, 1),
            [f"format version: index has {FORMAT_VERSION + 1}, this rag reads {FORMAT_VERSION}"],
        ),
        (
            manifest(),
            ("other-model", 512, 2),
            [
                "model: index has 'all-MiniLM-L6-v2', settings ask for 'other-model'",
                "max_tokens: index has 256, settings ask for 512",
                "overlap: index has 1, settings ask for 2",
            ],
        ),
        # things that do not decide how passages or vectors look are not mismatches
        (
            manifest(dimension=768, passages=99, index_type="hnsw", skipped={"a": "b"}, built_at="x"),
            ("all-MiniLM-L6-v2", 256, 1),
            [],
        ),
    ],
)
def test_mismatches(m, asked, found):
    model, max_tokens, overlap = asked
    assert m.mismatches(recipe(Settings(model=model, max_tokens=max_tokens, overlap=overlap))) == found


def test_chunking_parameters():
    assert manifest(max_tokens=128, overlap=2).chunking() == {
        "max_tokens": 128,
        "overlap": 2,
        "splitter": SPLITTER,
    }


@pytest.mark.parametrize(
    "tokenizer, found",
    [
        (TOKENIZER, []),
        ({**TOKENIZER, "version": 0}, ["BM25 tokenizer: index was built with other version"]),
        (
            {**TOKENIZER, "stopwords": "0" * 16, "stemmer": "porter"},
            ["BM25 tokenizer: index was built with other stemmer, stopwords"],
        ),
        ({**TOKENIZER, "token_pattern": r"\w+"}, ["BM25 tokenizer: index was built with other token_pattern"]),
        ({}, ["BM25 tokenizer: index was built with an unrecorded one"]),
    ],
)
def test_a_changed_bm25_tokenizer_is_a_mismatch(tokenizer, found):
    assert manifest(tokenizer=tokenizer, max_tokens=0).mismatches(recipe(Settings())) == found


def test_the_recipe_hash_names_what_decides_the_index():
    base = recipe(Settings())
    assert recipe_hash(base) == recipe_hash(dict(reversed(list(base.items()))))  # order does not matter
    changed = [
        recipe(Settings(model="other")),
        recipe(Settings(overlap=2)),
        {**base, "tokenizer": {**TOKENIZER, "version": 2}},
    ]
    assert len({recipe_hash(base), *map(recipe_hash, changed)}) == 4
    built = manifest(max_tokens=0).recipe()
    assert built.pop("precision") == "float32" and recipe_hash(built) == recipe_hash(
        base
    )  # the index adds its arithmetic
    # settings that do not decide the index's content leave the recipe alone
    assert recipe(Settings(candidates=5, max_quotes=1, port=1, hybrid=False)) == base
