"""Run ids: readable, sortable and unique: <recipe>-<UTC time>-<random>."""

from __future__ import annotations

import secrets
import time


def new_run_id(recipe_name: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{recipe_name}-{stamp}-{secrets.token_hex(2)}"
