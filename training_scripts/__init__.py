"""Code shipped into every training job, on every backend.

Self-contained on purpose: it never imports `recipes` or `providers`. The
orchestrator talks to it through one file, recipe.json (see train.py).
"""
