"""The stages import only downwards: import-linter's layers contract in pyproject.toml holds, and breaks when a
lower layer imports a higher one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(project: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(project / "pyproject.toml"), "--no-cache"],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_contract_is_kept():
    found = _lint(ROOT)
    assert found.returncode == 0, found.stdout + found.stderr
    assert "1 kept, 0 broken" in found.stdout


def test_the_contract_breaks_when_the_index_imports_the_chat(tmp_path):
    shutil.copytree(ROOT / "rag", tmp_path / "rag", ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    store = tmp_path / "rag" / "index" / "store.py"
    store.write_text(
        store.read_text() + "\n\ndef _upward():\n    from rag.serve import chat  # a lower layer reaching up\n"
    )
    found = _lint(tmp_path)
    assert found.returncode != 0
    assert "rag.index.store -> rag.serve.chat" in found.stdout
