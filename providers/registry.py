"""Provider names -> implementations, imported only when asked for.

Only providers that work are registered.
Importing this module imports no SDK.
"""

from __future__ import annotations

import importlib
from typing import Any

from providers.base import Provider
from recipes.errors import RecipeInputError, did_you_mean

PROVIDERS: dict[str, str] = {
    "local": "providers.local:LocalProvider",
    "aws": "providers.aws:AwsProvider",
    "azure": "providers.azure:AzureProvider",
    "gcp": "providers.gcp:GcpProvider",
}


def get_provider(name: str, **kwargs: Any) -> Provider:
    target = PROVIDERS.get(name)
    if target is None:
        hint = did_you_mean(name, PROVIDERS)
        raise RecipeInputError(
            f"--provider: unknown provider '{name}'; available: {', '.join(PROVIDERS)}"
            + (f" ({hint})" if hint else "")
        )
    module_name, class_name = target.split(":")
    module = importlib.import_module(module_name)
    return getattr(module, class_name)(**kwargs)
