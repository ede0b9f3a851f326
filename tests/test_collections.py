"""rag.collections and rag.serve.library: named collections recorded once, and who may read and edit which."""

from __future__ import annotations

import json

import pytest
from conftest import write_corpus
from fakes import FakeEmbedder

from rag.build.indexer import build
from rag.collections import CONFIG, configured, resolve
from rag.config import Settings
from rag.errors import ConfigError, UploadRefused
from rag.serve import accounts
from rag.serve.library import Access, Library
from rag.serve.login import AccountsFile


@pytest.mark.parametrize(
    "flag", ["../etc=/tmp", "HR=/srv", "a/b=/srv", "=/srv", ".hidden", "x" * 41, "hr name=/srv", "hr\x00=/srv"]
)
def test_a_collection_name_with_path_tricks_is_refused(tmp_path, flag):
    with pytest.raises(ConfigError, match="is not a collection name"):
        resolve(Settings(index=tmp_path), [flag])


def test_collections_are_named_once_then_found_by_name(tmp_path):
    settings = Settings(index=tmp_path / "index")
    assert resolve(settings, None) == [] and resolve(settings, []) == []
    named = resolve(settings, ["hr=" + str(tmp_path / "hr"), "eng=" + str(tmp_path / "eng")])
    assert [(c.name, c.corpus, c.index) for c in named] == [
        ("hr", tmp_path / "hr", tmp_path / "index" / "hr"),
        ("eng", tmp_path / "eng", tmp_path / "index" / "eng"),
    ]
    assert [c.name for c in resolve(settings, ["eng"])] == ["eng"]  # recorded: the name is enough now
    record = json.loads((tmp_path / "index" / CONFIG).read_text())
    assert record == {"collections": {"eng": {"corpus": str(tmp_path / "eng")}, "hr": {"corpus": str(tmp_path / "hr")}}}
    with pytest.raises(ConfigError, match="no collection 'ops'.*--collection ops=DIR"):
        resolve(settings, ["ops"])
    record["collections"]["eng"]["index"] = str(tmp_path / "fast" / "eng")  # the file may put an index elsewhere
    (tmp_path / "index" / CONFIG).write_text(json.dumps(record))
    assert configured(settings)["eng"].index == tmp_path / "fast" / "eng"
    (tmp_path / "index" / CONFIG).write_text("{not json")
    with pytest.raises(ConfigError, match="collections file .* is damaged"):
        resolve(settings, ["hr"])


@pytest.fixture
def library(tmp_path):
    """Two built collections, alpha and bravo, and an accounts file: rita reads alpha, eddie edits alpha."""
    settings = Settings(index=tmp_path / "index", model="fake-model")
    chosen = resolve(settings, [f"alpha={tmp_path / 'alpha'}", f"bravo={tmp_path / 'bravo'}"])
    fake = FakeEmbedder()
    for collection in chosen:
        collection.corpus.mkdir()
        write_corpus(collection.corpus, {"doc.txt": f"The {collection.name} document says hello."})
        build(collection.settings(settings), embedder_factory=lambda name: fake)
    path = tmp_path / "index" / accounts.FILE
    accounts.add_user(path, "rita", "reader", ["alpha"], [], "a long passphrase")
    accounts.add_user(path, "eddie", "editor", ["alpha"], [], "a long passphrase")
    return Library.open(settings, chosen, embedder_factory=lambda name: fake), AccountsFile(path)


def test_access_gives_each_user_their_collections_and_passes_over_the_others_as_if_missing(library):
    shelves, people = library
    access = Access(shelves, people)
    assert access.readable("rita") == ["alpha"] and access.readable("nobody") == []
    assert access.chosen("rita", None) == ["alpha"] and access.chosen("rita", ["alpha", "bravo"]) == ["alpha"]
    assert access.chosen("rita", ["bravo"]) == access.chosen("rita", ["zeta"]) == []  # forbidden reads as missing
    assert [r.collection for r in shelves.retrievers(access.chosen("rita", None))] == ["alpha"]
    assert Access(shelves).readable(None) == ["alpha", "bravo"]  # without accounts: one person, everything


def test_editing_is_refused_outside_an_editor_s_collections_with_the_right_named(library):
    shelves, people = library
    access = Access(shelves, people)
    assert access.for_editing("eddie", "alpha", "upload").corpus == shelves.shelves["alpha"].settings.corpus
    for user, name in (("eddie", "bravo"), ("rita", "alpha"), ("nobody", "alpha"), ("eddie", "zeta")):
        with pytest.raises(UploadRefused, match=f"refused: delete needs an editor of collection '{name}'"):
            access.for_editing(user, name, "delete")


def test_a_collection_that_cannot_be_loaded_is_served_as_unavailable_and_the_others_answer(tmp_path):
    settings = Settings(index=tmp_path / "index", model="fake-model")
    chosen = resolve(settings, [f"good={tmp_path / 'good'}", f"broken={tmp_path / 'broken'}"])
    fake = FakeEmbedder()
    chosen[0].corpus.mkdir()
    write_corpus(chosen[0].corpus, {"doc.txt": "The good collection answers."})
    build(chosen[0].settings(settings), embedder_factory=lambda name: fake)
    shelves = Library.open(settings, chosen, embedder_factory=lambda name: fake)  # broken was never built
    assert shelves.shelves["broken"].retriever is None and "rag build" in shelves.shelves["broken"].problem
    assert [r.collection for r in shelves.retrievers(["good", "broken"])] == ["good"]
