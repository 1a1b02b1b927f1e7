"""The data pipeline of a job: rows in, tokenized datasets out, cached once per node.

    read (rows.py) -> PII policy (pii.py) -> dedupe, then split (data.py)
      -> encode with loss masks (data.py) -> drop what does not fit -> Datasets

`load_datasets` serves the datasets from the preprocessing cache, or makes them
and caches them; `training_scripts.preprocess` calls it before torchrun starts so
that several processes load one cached copy instead of each tokenizing the data.
The cache key covers everything that changes the tokens: the bytes of every data
file, the tokenizer files, and the data settings (format, PII policy, sequence
length, packing, loss masking, validation split and seed).

torch-free at import; the tokenizer is loaded (transformers) only on a cache miss.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_scripts import modeling, pii, platforms
from training_scripts.data import DataError, Encoded, Example, dedupe, encode, split
from training_scripts.distributed import Dist, log
from training_scripts.rows import read_examples

CACHE_ENV = "RECIPE_CACHE_DIR"
VERSION = 2  # bump when the tokenized format changes (2: Datasets moved to this module)


@dataclass
class Datasets:
    train: list[Encoded]
    valid: list[Encoded]
    golden: list[Example]
    dropped: int


def load_datasets(
    recipe: dict[str, Any], paths: platforms.Paths, dist: Dist, tokenizer: Any | None = None
) -> Datasets:
    """Tokenized datasets from the preprocessing cache, or made now and cached."""
    base = modeling.resolve_base(recipe["model"]["base"])
    key = cache_key(recipe, paths, base)
    directory = cache_dir(paths)
    cached = load_cache(directory, key)
    if cached is not None:
        log(
            dist,
            f"data: {len(cached.train)} train, {len(cached.valid)} validation, "
            f"{len(cached.golden)} golden (cached {key})",
        )
        return cached
    if tokenizer is None:
        tokenizer = modeling.load_tokenizer(
            base, recipe["model"]["revision"], recipe["model"]["trust_remote_code"]
        )
    data = load_data(recipe, paths, tokenizer, dist)
    if dist.main:
        save_cache(directory, key, data)
    return data


def load_data(
    recipe: dict[str, Any], paths: platforms.Paths, tokenizer: Any, dist: Dist
) -> Datasets:
    """Read, apply the PII policy, dedupe and split, encode, and drop what cannot train."""
    spec = recipe["data"]
    seed = recipe["training"]["seed"]
    fmt, policy = spec["format"], spec["pii"]
    train_path = platforms.data_path("train", spec["train"], paths)
    train_examples, flagged = pii.apply_policy(
        read_examples(train_path, fmt), policy, str(train_path)
    )
    if flagged:
        log(dist, f"pii: {flagged} rows with personal data ({policy})")
    train_examples, exact, normal = dedupe(train_examples)
    if exact or normal:
        log(dist, f"dedupe: dropped {exact} exact and {normal} normalized duplicates")
    validation = spec["validation"]
    if isinstance(validation, float):
        train_examples, valid_examples = split(train_examples, validation, seed)
    elif isinstance(validation, str):
        valid_path = platforms.data_path("validation", validation, paths)
        valid_examples, _ = pii.apply_policy(
            read_examples(valid_path, fmt), policy, str(valid_path)
        )
    else:
        valid_examples = []
    golden_path = recipe["eval"]["golden"]
    golden = read_examples(platforms.data_path("golden", golden_path, paths)) if golden_path else []

    limit = spec["max_seq_len"]
    train = [encode(e, tokenizer, spec["train_on"]) for e in train_examples]
    valid = [encode(e, tokenizer, spec["train_on"]) for e in valid_examples]
    kept_train = [e for e in train if len(e) <= limit and e.trained_tokens]
    kept_valid = [e for e in valid if len(e) <= limit and e.trained_tokens]
    dropped = len(train) - len(kept_train) + len(valid) - len(kept_valid)
    if not kept_train:
        raise DataError([f"data.train: no example fits max_seq_len={limit} with tokens to train"])
    log(
        dist,
        f"data: {len(kept_train)} train, {len(kept_valid)} validation, {len(golden)} golden"
        + (f"; dropped {dropped} over max_seq_len={limit}" if dropped else ""),
    )
    return Datasets(train=kept_train, valid=kept_valid, golden=golden, dropped=dropped)


# --- the preprocessing cache -------------------------------------------------------------


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


def load_cache(directory: Path, key: str) -> Datasets | None:
    path = directory / f"{key}.pkl"
    if not path.exists():
        return None
    with path.open("rb") as fh:
        return pickle.load(fh)


def save_cache(directory: Path, key: str, datasets: Datasets) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{key}.")
    with os.fdopen(fd, "wb") as fh:
        pickle.dump(datasets, fh, protocol=pickle.HIGHEST_PROTOCOL)
    final = directory / f"{key}.pkl"
    os.replace(tmp, final)  # atomic: readers see a whole cache entry or none
    return final
