"""Code shipped into every training job, on every backend.

Self-contained on purpose: it never imports `recipes` or `providers`. The
orchestrator talks to it through one file, recipe.json (see contract.py).

Modules, bottom to top (each imports only those above it):
    rows, modeling, platforms, distributed, gates, secrets, tracking, checkpoints
    pii, data, contract           reading rows, examples, the recipe.json contract
    packing, evaluate, pipeline   batching, metrics, the data pipeline and its cache
    preprocess, export, train     entry points (train is imported by none)
    launch                        the in-job launcher (runs preprocess and train)
"""
