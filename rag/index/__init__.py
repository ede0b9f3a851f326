"""The index on disk: immutable segments, the manifest, BM25, versions and merges."""
