"""`recipe providers`: each backend, whether its extra is installed, whether credentials are
found on this machine, and its capabilities. Looks only at local files and environment
variables: no network, no cloud SDK call."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from providers.registry import PROVIDERS, capabilities


@dataclass(frozen=True)
class Entry:
    name: str
    extra: str
    installed: bool
    credentials: str  # where they were found, or "none found"
    capabilities: dict[str, Any]


def inventory(env: dict[str, str] | None = None, home: Path | None = None) -> list[Entry]:
    env = dict(os.environ) if env is None else env
    home = home or Path.home()
    entries = []
    for name, provider in PROVIDERS.items():
        entries.append(
            Entry(
                name=name,
                extra=provider.extra,
                installed=_installed(provider.probe),
                credentials=_credentials(name, env, home),
                capabilities=asdict(capabilities(name)),
            )
        )
    return entries


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _credentials(name: str, env: dict[str, str], home: Path) -> str:
    if name == "local":
        return "not needed"
    checks = {
        "aws": [
            ("AWS_ACCESS_KEY_ID" in env, "AWS_ACCESS_KEY_ID"),
            ("AWS_PROFILE" in env, f"AWS_PROFILE={env.get('AWS_PROFILE')}"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE" in env, "web identity token"),
            (
                Path(env.get("AWS_SHARED_CREDENTIALS_FILE", home / ".aws/credentials")).is_file(),
                "~/.aws/credentials",
            ),
            ((home / ".aws/sso/cache").is_dir(), "AWS SSO cache"),
        ],
        "azure": [
            ("AZURE_CLIENT_ID" in env and "AZURE_TENANT_ID" in env, "AZURE_CLIENT_ID"),
            ((home / ".azure/msal_token_cache.json").is_file(), "az login"),
            ("IDENTITY_ENDPOINT" in env or "MSI_ENDPOINT" in env, "managed identity"),
        ],
        "gcp": [
            ("GOOGLE_APPLICATION_CREDENTIALS" in env, "GOOGLE_APPLICATION_CREDENTIALS"),
            (
                (home / ".config/gcloud/application_default_credentials.json").is_file(),
                "gcloud application-default login",
            ),
        ],
    }[name]
    found = [label for present, label in checks if present]
    return ", ".join(found) if found else "none found"
