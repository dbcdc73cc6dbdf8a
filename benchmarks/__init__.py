"""Benchmark tooling for featpipe: dataset preparation, a small harness, one module per
comparison.

- ``benchmarks.datasets``: prepares datasets into featpipe manifests
  (``python -m benchmarks.datasets --help``), reusing featpipe's own readers.
- ``benchmarks.harness``: options (``--quick``, ``--out``, datasets), arms, wall time / load
  average / peak RSS, CSV / Markdown / PNG pages, the shared result cache.
- ``benchmarks.common``: feature stores and scoring shared by the comparisons.
- One module per comparison, each ``python -m benchmarks.<name>``: ``compare_layers``,
  ``compare_recipes``, ``few_shot``, ``few_shot_stats``, ``compare_classifiers``, ``cost``,
  ``bench_extract``, ``bench_fit``, ``bench_search``, ``peers``; ``run_all`` runs the suite.
"""
