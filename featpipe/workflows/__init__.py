"""The orchestrators: fit a store, predict images or a store, evaluate a model; the only modules
that wire extraction, the store, the classical stage, persistence and reports together."""
