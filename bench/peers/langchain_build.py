"""LangChain with its defaults: DirectoryLoader(TextLoader), RecursiveCharacterTextSplitter(), HuggingFaceEmbeddings, FAISS.

Run by bench/out/venv-langchain/bin/python from bench/build_speed.py --peers; prints one JSON line.
Model loading is timed apart from the build (load → split → embed → FAISS → save).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from peer_common import arguments, token_figures  # noqa: E402


def main() -> int:
    args = arguments()

    from importlib.metadata import version

    from langchain_community.document_loaders import DirectoryLoader, TextLoader
    from langchain_community.vectorstores import FAISS
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    started = time.perf_counter()
    embeddings = HuggingFaceEmbeddings(model_name=args.model, model_kwargs={"device": "cpu"})
    model_load = time.perf_counter() - started

    splitter = RecursiveCharacterTextSplitter()
    started = time.perf_counter()
    documents = DirectoryLoader(
        args.corpus, glob="**/*.txt", loader_cls=TextLoader, loader_kwargs={"encoding": "utf-8"}
    ).load()
    chunks = splitter.split_documents(documents)
    store = FAISS.from_documents(chunks, embeddings)
    store.save_local(args.out)
    build = time.perf_counter() - started

    figures = token_figures(args.model, [c.page_content for c in chunks], embeddings._client.max_seq_length)
    print(
        json.dumps(
            {
                "system": "langchain",
                "version": version("langchain-community"),
                "splitter": f"RecursiveCharacterTextSplitter(chunk_size={splitter._chunk_size}, chunk_overlap={splitter._chunk_overlap})",
                "documents": len(documents),
                "build_s": round(build, 2),
                "model_load_s": round(model_load, 2),
                "batch_size": embeddings.encode_kwargs.get("batch_size", 32),
                "faiss_vectors": int(store.index.ntotal),
                "embeds_metadata": False,
                "embedded_example": chunks[0].page_content[:200] if chunks else "",
                **figures,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
