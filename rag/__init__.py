"""rag: offline, citation-first question answering over a local document corpus."""

__version__ = "0.1.0"
