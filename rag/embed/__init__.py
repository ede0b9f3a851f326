"""The embedding model and its arithmetic: texts in, unit vectors out."""
