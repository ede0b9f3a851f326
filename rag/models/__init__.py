"""The model files rag ships: the answer model, the span model and the answer marker (see training/README.md)."""
