"""rag.embed.bert: rag's own encoder takes only the models it reproduces exactly (reads model folders, runs nothing)."""

from __future__ import annotations

from pathlib import Path

from rag.config import DEFAULT_MODEL


def test_rags_encoder_runs_only_the_models_it_reproduces(tmp_path):
    """A BERT with mean pooling, yes; any other pooling, model type or missing file goes to sentence-transformers."""
    import json
    import shutil

    from rag.embed.bert import supports
    from rag.embed.embedder import resolve_model

    bundled = Path(resolve_model(DEFAULT_MODEL))
    assert supports(bundled)
    for name, change in [
        ("cls", lambda f: _edit(f / "1_Pooling" / "config.json", pooling_mode_cls_token=True)),
        ("roberta", lambda f: _edit(f / "config.json", model_type="roberta")),
        ("relu", lambda f: _edit(f / "config.json", hidden_act="relu")),
        ("lower", lambda f: _edit(f / "sentence_bert_config.json", do_lower_case=True)),
        (
            "dense",
            lambda f: (f / "modules.json").write_text(
                json.dumps(
                    json.loads((f / "modules.json").read_text())[:2] + [{"type": "sentence_transformers.models.Dense"}]
                )
            ),
        ),
        ("no weights", lambda f: (f / "model.safetensors").unlink()),
        ("no modules", lambda f: (f / "modules.json").unlink()),
    ]:
        folder = tmp_path / name
        shutil.copytree(bundled, folder, ignore=shutil.ignore_patterns("model.safetensors"))
        (folder / "model.safetensors").symlink_to(bundled / "model.safetensors")
        assert supports(folder)
        change(folder)
        assert not supports(folder), name


def _edit(path, **changes):
    import json

    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
