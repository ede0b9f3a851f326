"""Measuring quality on public data sets: `rag eval` and its metrics."""
