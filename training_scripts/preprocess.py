"""Tokenize once, before any training process starts, and cache the result.

    python -m training_scripts.preprocess --config recipe.json --output-dir OUT

Several processes (torchrun) then load the same cached datasets instead of each
tokenizing the data. The cache key covers everything that changes the tokens: the
bytes of every data file, the tokenizer files, and the data settings (format, PII
policy, sequence length, packing, loss masking, validation split and seed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

from training_scripts import platforms

CACHE_ENV = "RECIPE_CACHE_DIR"
VERSION = 1  # bump when the tokenized format changes


def cache_dir(paths: platforms.Paths) -> Path:
    return Path(os.environ.get(CACHE_ENV) or paths.output_dir / "cache")


def cache_key(recipe: dict[str, Any], paths: platforms.Paths, base: str) -> str:
    digest = hashlib.sha256()
    data = recipe["data"]
    settings = {
        "version": VERSION,
        "data": {
            k: data[k]
            for k in ("format", "pii", "max_seq_len", "packing", "train_on", "validation")
        },
        "seed": recipe["training"]["seed"],
        "golden": bool(recipe["eval"]["golden"]),
        "base": recipe["model"]["base"],
        "revision": recipe["model"]["revision"],
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for name, location in (
        ("train", data["train"]),
        ("validation", data["validation"]),
        ("golden", recipe["eval"]["golden"]),
    ):
        if isinstance(location, str):
            digest.update(_file_digest(platforms.data_path(name, location, paths)))
    base_dir = Path(base)
    if base_dir.is_dir():  # a local or builtin model: its tokenizer files are part of the key
        for file in sorted(base_dir.glob("*token*")) + sorted(base_dir.glob("*.jinja")):
            digest.update(file.name.encode() + _file_digest(file))
    return digest.hexdigest()[:24]


def _file_digest(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def load(directory: Path, key: str) -> Any | None:
    path = directory / f"{key}.pkl"
    if not path.exists():
        return None
    with path.open("rb") as fh:
        return pickle.load(fh)


def save(directory: Path, key: str, datasets: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{key}.")
    with os.fdopen(fd, "wb") as fh:
        pickle.dump(datasets, fh, protocol=pickle.HIGHEST_PROTOCOL)
    final = directory / f"{key}.pkl"
    os.replace(tmp, final)  # atomic: readers see a whole cache entry or none
    return final


def main(argv: list[str] | None = None) -> int:
    from training_scripts import modeling
    from training_scripts.distributed import Dist
    from training_scripts.rows import DataError
    from training_scripts.train import FAILURE_FILE, load_datasets

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--output-dir", default=None)
    args = parser.parse_args(argv)
    config = json.loads(Path(args.config).read_text())
    paths = platforms.resolve(args.output_dir)
    paths.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        load_datasets(config["recipe"], paths, Dist())
    except (DataError, modeling.SetupError) as exc:
        (paths.output_dir / FAILURE_FILE).write_text(json.dumps({"message": str(exc)}))
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
