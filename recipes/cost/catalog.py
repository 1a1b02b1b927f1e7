"""The hardware catalog: abstract hardware -> each cloud's instance types and prices.

The data lives in hardware.yaml (versioned; every price carries its source and
date). Resolution picks, for an abstract ask (accelerator, GPUs per node), the
cheapest offer in the region with exactly that accelerator and GPU count; an
explicit instance type overrides it. An impossible ask is an
error that names the nearest offers.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from recipes.errors import Problem, RecipeInputError

CATALOG_FILE = Path(__file__).with_name("hardware.yaml")


@dataclass(frozen=True)
class Price:
    on_demand: float
    spot: float | None


@dataclass(frozen=True)
class Offer:
    provider: str
    instance_type: str
    accelerator: str
    gpus: int
    gpu_memory_gb: float
    vcpus: int
    memory_gb: float
    prices: dict[str, Price]  # region -> price per instance-hour
    source: str
    as_of: str
    accelerator_type: str | None = None  # the cloud's own name, where it needs one (Vertex)
    spot_basis: str = ""

    def price(self, region: str) -> Price | None:
        return self.prices.get(region)

    def describe(self) -> str:
        gpus = f"{self.gpus}x {self.accelerator}" if self.gpus else f"{self.vcpus} vCPU"
        return f"{self.instance_type} ({gpus})"


@dataclass(frozen=True)
class Accelerator:
    name: str
    gpu_memory_gb: float
    peak_tflops_bf16: float
    tokens_per_s_per_gpu_7b_lora: float


@dataclass(frozen=True)
class Catalog:
    version: str
    updated: str
    accelerators: dict[str, Accelerator]
    offers: dict[str, tuple[Offer, ...]]  # provider -> offers

    def find(self, provider: str, instance_type: str, accelerator: str = "") -> Offer | None:
        """The offer of that type; where a type comes with several accelerators (GCP's
        n1-standard-8 alone or with T4s), the one with `accelerator` first."""
        matches = [o for o in self.offers.get(provider, ()) if o.instance_type == instance_type]
        preferred = [o for o in matches if o.accelerator == accelerator]
        return (preferred or matches or [None])[0]


@functools.cache
def load(path: Path = CATALOG_FILE) -> Catalog:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    accelerators = {
        name: Accelerator(
            name=name,
            gpu_memory_gb=float(spec.get("gpu_memory_gb") or 0),
            peak_tflops_bf16=float(spec.get("peak_tflops_bf16") or 0),
            tokens_per_s_per_gpu_7b_lora=float(spec.get("tokens_per_s_per_gpu_7b_lora") or 0),
        )
        for name, spec in data["accelerators"].items()
    }
    offers = {
        provider: tuple(_offer(provider, entry) for entry in entries)
        for provider, entries in data["offers"].items()
    }
    return Catalog(
        version=str(data["version"]),
        updated=str(data["updated"]),
        accelerators=accelerators,
        offers=offers,
    )


def _offer(provider: str, entry: dict[str, Any]) -> Offer:
    prices = {
        region: Price(on_demand=float(p["on_demand"]), spot=_maybe_float(p.get("spot")))
        for region, p in (entry.get("prices") or {}).items()
    }
    return Offer(
        provider=provider,
        instance_type=entry["instance_type"],
        accelerator=entry["accelerator"],
        gpus=int(entry.get("gpus") or 0),
        gpu_memory_gb=float(entry.get("gpu_memory_gb") or 0),
        vcpus=int(entry.get("vcpus") or 0),
        memory_gb=float(entry.get("memory_gb") or 0),
        prices=prices,
        source=str(entry.get("source", "")),
        as_of=str(entry.get("as_of", "")),
        accelerator_type=entry.get("accelerator_type"),
        spot_basis=str(entry.get("spot_basis", "")),
    )


def _maybe_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Ask:
    """The abstract hardware a recipe asks for, on one provider."""

    provider: str
    accelerator: str
    gpus_per_node: int
    region: str
    instance_type: str | None = None  # explicit override from compute.<provider>
    override_field: str = ""  # e.g. compute.aws.instance_type, for error messages
    region_field: str = ""
    accelerator_field: str = "compute.accelerator"


def resolve(ask: Ask, catalog: Catalog | None = None) -> Offer:
    catalog = catalog or load()
    offers = catalog.offers.get(ask.provider, ())
    if ask.instance_type:
        return _explicit(ask, catalog)
    gpus = ask.gpus_per_node if ask.accelerator != "cpu" else 0
    # Exactly the GPUs asked for (never pay for idle ones silently), cheapest first.
    fitting = [
        o
        for o in offers
        if o.accelerator == ask.accelerator and o.gpus == gpus and o.price(ask.region)
    ]
    if fitting:
        return min(fitting, key=lambda o: o.price(ask.region).on_demand)  # type: ignore[union-attr]
    raise RecipeInputError(
        Problem(
            f"no {ask.provider} offer has {_ask_text(ask)} in {ask.region}",
            field=ask.accelerator_field,
            hint="nearest: " + ", ".join(_nearest(ask, offers)),
        )
    )


def _explicit(ask: Ask, catalog: Catalog) -> Offer:
    offer = catalog.find(ask.provider, ask.instance_type or "", ask.accelerator)
    if offer is None:
        from recipes.errors import did_you_mean

        known = [o.instance_type for o in catalog.offers.get(ask.provider, ())]
        raise RecipeInputError(
            Problem(
                f"'{ask.instance_type}' is not in the hardware catalog (version {catalog.version})",
                field=ask.override_field,
                hint=did_you_mean(ask.instance_type or "", known)
                or "add it to recipes/cost/hardware.yaml with its price and source",
            )
        )
    if offer.price(ask.region) is None:
        raise RecipeInputError(
            Problem(
                f"{offer.instance_type} has no listed price in {ask.region}",
                field=ask.region_field or ask.override_field,
                hint="listed in: " + ", ".join(sorted(offer.prices)),
            )
        )
    return offer


def _ask_text(ask: Ask) -> str:
    if ask.accelerator == "cpu":
        return "a CPU-only instance"
    return f"{ask.gpus_per_node}x {ask.accelerator} on one node"


def _nearest(ask: Ask, offers: tuple[Offer, ...], count: int = 3) -> list[str]:
    """Offers closest to the ask: same accelerator first, then similar GPU memory and count."""
    wanted_memory = next((o.gpu_memory_gb for o in offers if o.accelerator == ask.accelerator), 0.0)

    def distance(o: Offer) -> tuple[int, int, float, float]:
        in_region = 0 if o.price(ask.region) else 1
        return (
            0 if o.accelerator == ask.accelerator else 1,
            in_region,
            abs(o.gpu_memory_gb - wanted_memory),
            abs(o.gpus - ask.gpus_per_node),
        )

    ranked = sorted(offers, key=distance)[:count]
    return [
        o.describe() + ("" if o.price(ask.region) else f" (not in {ask.region})") for o in ranked
    ]


def accelerators(provider: str) -> tuple[str, ...]:
    """The abstract accelerators a provider offers, in the schema's order."""
    from recipes.schema.compute import ACCELERATORS

    offered = {o.accelerator for o in load().offers.get(provider, ())}
    return tuple(a for a in ACCELERATORS if a in offered)
