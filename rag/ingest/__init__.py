"""Reading the corpus: finding files, reading each format into its text, cutting passages."""
