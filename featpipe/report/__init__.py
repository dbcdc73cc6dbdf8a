"""Results people read: test metrics, JSON and Markdown reports, confusion-matrix and comparison
plots."""
