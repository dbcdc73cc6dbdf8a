"""Stage 2: scikit-learn over stored features: array-API transformers, named recipes, and the
cross-validated search that tunes them; fitted pipelines persisted with skops.

The typed entry points: :func:`~featpipe.classical.recipes.build_recipe` (a recipe's pipeline
and its grid, a dict; reductions as :class:`~featpipe.classical.recipes.Reduction`) and
:func:`~featpipe.classical.search.search` with a :class:`~featpipe.classical.search.SearchConfig`
(fast, grid or halving search). Options are checked against constraints declared once
(:mod:`featpipe.params`). This package never imports the workflows or the command line.
"""
