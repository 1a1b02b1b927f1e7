"""The application layer: the use cases of `recipe`, callable from Python.

    from recipes.app import runs
    launched = runs.run("recipe.yaml", ["training.epochs=1"], provider="aws")
    final = runs.wait(launched.ref.run_id)

Modules: runs (validate, prepare/plan, run, status, logs, cancel, wait, list_runs),
clusters (plan, create, status, delete), data (check, preview), exports (export).
They return data and raise recipes.errors' typed errors; the CLI only renders them.
"""
