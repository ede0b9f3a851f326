"""LlamaIndex with its defaults: SimpleDirectoryReader, default node parser, HuggingFaceEmbedding, FAISS.

Run by bench/out/venv-llamaindex/bin/python from bench/build_speed.py --peers; prints one JSON line.
Model loading is timed apart from the build (read → split → embed → FAISS → persist).
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

    import faiss
    from llama_index.core import Settings, SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.schema import MetadataMode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.faiss import FaissVectorStore

    started = time.perf_counter()
    embed_model = HuggingFaceEmbedding(model_name=args.model, device="cpu")
    model_load = time.perf_counter() - started
    Settings.embed_model = embed_model
    Settings.llm = None
    dimension = len(embed_model.get_text_embedding("dimension probe"))

    started = time.perf_counter()
    documents = SimpleDirectoryReader(args.corpus, recursive=True, required_exts=[".txt", ".md"]).load_data()
    vector_store = FaissVectorStore(faiss_index=faiss.IndexFlatL2(dimension))
    storage = StorageContext.from_defaults(vector_store=vector_store)
    index = VectorStoreIndex.from_documents(documents, storage_context=storage)
    index.storage_context.persist(persist_dir=args.out)
    build = time.perf_counter() - started

    nodes = Settings.node_parser.get_nodes_from_documents(documents)  # the same split, untimed, for counting
    embedded = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    plain = [n.get_content(metadata_mode=MetadataMode.NONE) for n in nodes]
    parser_ = Settings.node_parser
    figures = token_figures(args.model, embedded, embed_model._model.max_seq_length)
    print(
        json.dumps(
            {
                "system": "llamaindex",
                "version": version("llama-index-core"),
                "splitter": f"{type(parser_).__name__}(chunk_size={parser_.chunk_size}, chunk_overlap={parser_.chunk_overlap})",
                "documents": len(documents),
                "build_s": round(build, 2),
                "model_load_s": round(model_load, 2),
                "batch_size": embed_model.embed_batch_size,
                "faiss_vectors": int(vector_store._faiss_index.ntotal),
                "embeds_metadata": embedded[0] != plain[0] if nodes else False,
                "embedded_example": embedded[0][:200] if nodes else "",
                **figures,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
