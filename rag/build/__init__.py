"""Keeping the index up to date with the corpus: incremental builds, conversion, watching, status."""
