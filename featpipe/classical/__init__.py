"""Stage 2: scikit-learn over stored features: array-API transformers, named recipes
(build_recipe), the search that tunes them (search + SearchConfig), skops persistence."""
