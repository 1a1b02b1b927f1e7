"""Tokenize once, before any training process starts, and cache the result.

    python -m training_scripts.preprocess --config recipe.json --output-dir OUT

Several processes (torchrun) then load the same cached datasets instead of each
tokenizing the data; the pipeline and its cache live in pipeline.py.
"""

from __future__ import annotations

import argparse
import sys

from training_scripts import contract, platforms
from training_scripts.data import DataError
from training_scripts.distributed import Dist
from training_scripts.modeling import SetupError
from training_scripts.pipeline import load_datasets


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--output-dir", default=None)
    args = parser.parse_args(argv)
    paths = platforms.resolve(args.output_dir)
    paths.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        config = contract.load_config(args.config)
        load_datasets(config["recipe"], paths, Dist())
    except (DataError, SetupError) as exc:
        contract.write_failure(paths.output_dir, str(exc))
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return contract.EXIT_SETUP
    return contract.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
