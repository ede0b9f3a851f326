"""Run one build with the fake embedder and stop dead at a named phase, so a test can SIGKILL it there.

Usage: python tests/slow_build.py CORPUS INDEX PHASE
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes import FakeEmbedder  # noqa: E402

from rag.build.indexer import build  # noqa: E402
from rag.config import Settings  # noqa: E402
from rag.index import store  # noqa: E402


def stall(phase):
    print(f"PHASE {phase}", flush=True)
    time.sleep(60)


def main(corpus, index, phase):
    fake = FakeEmbedder()
    if phase == "embedding":
        original_encode = fake.encode
        fake.encode = lambda texts, **kw: (stall(phase), original_encode(texts, **kw))[1]
    if phase == "writing":
        from rag.index.bm25 import Postings

        original_build = Postings.build
        Postings.build = classmethod(lambda cls, texts: (stall(phase), original_build(texts))[1])
    if phase == "converting":
        from rag.build import conversion

        original_read = conversion.read_one
        conversion.read_one = lambda *args: (stall(phase), original_read(*args))[1]
    if phase in ("publishing", "published"):
        original_publish = store.publish

        def publish(root, version):
            if phase == "publishing":
                stall(phase)
            original_publish(root, version)
            stall(phase)

        store.publish = publish
    if phase in ("merging", "merged"):  # the edit is published, then the two segments are merged
        from rag.index import merge

        original_write = merge.write_segment
        merge.write_segment = lambda *args, **kw: (original_write(*args, **kw), phase == "merging" and stall(phase))[0]
        original_publish, published = store.publish, []

        def publish(root, version):
            original_publish(root, version)
            published.append(version)
            if phase == "merged" and len(published) == 2:
                stall(phase)

        store.publish = publish
    settings = Settings(
        corpus=Path(corpus),
        index=Path(index),
        model="fake-model",
        merge_factor=2 if phase in ("merging", "merged") else 10,
    )
    build(settings, embedder_factory=lambda name: fake)


if __name__ == "__main__":
    main(*sys.argv[1:4])
