"""Cost before launch: hours from the training tokens, times the price, times nodes.

hours = startup + tokens x epochs / (tokens/s per device x devices x scaling)

- tokens come from the data itself when it is readable here (local files,
  counted with the base model's tokenizer when it is local, else ~4 characters
  per token); remote data gives no count and the estimate falls back to the
  worst case, max_runtime.
- tokens/s per GPU come from the catalog's per-accelerator basis (a 7B model
  with LoRA), scaled by model size and method; CPU throughput is the
  quickstart's measured figure (README), scaled the same way.
The figures are deliberately simple and printed with their basis, so a reader
can check them; the budget guard compares the expected cost with budget.max_usd.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from recipes import rules
from recipes.cost.catalog import Catalog, Offer, load
from recipes.schema import Recipe

STARTUP_HOURS = 0.15  # provisioning, image pull, model download: billed, not training
MULTI_NODE_EFFICIENCY = 0.9  # cross-node gradient exchange; one node is 1.0
METHOD_SPEED = {"lora": 1.0, "qlora": 0.7, "full": 0.67}  # full: ~6N vs ~4N FLOPs per token
CPU_TOKENS_PER_S_PER_VCPU_1M_PARAMS = 5000.0  # quickstart: 2,360 tok/s, 2 vCPU, 4.2M params
BUILTIN_PARAMS = {"builtin:tiny-chat": 4.2e6}
DEFAULT_PARAMS = 7e9
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class Estimate:
    hours: float | None
    on_demand_usd: float
    spot_usd: float | None = None
    currency: str = "USD"
    basis: str = ""
    training_tokens: int | None = None  # one epoch, when the data was readable at plan time
    worst_case_usd: float | None = None  # the whole max_runtime on demand


@dataclass(frozen=True)
class TokenCount:
    tokens: int | None
    method: str  # "tokenizer", "characters/4", or why there is no count


def training_tokens(recipe: Recipe) -> TokenCount:
    """Tokens in one epoch of the training file, counted here without network."""
    location = recipe.data.train
    if rules.is_remote(location):
        return TokenCount(None, f"{location.split('://')[0]}:// data is not read at plan time")
    path = Path(location)
    if not path.is_file():
        return TokenCount(None, f"{location} not found")
    from training_scripts.rows import DataError, read_examples

    try:
        examples = read_examples(path, recipe.data.format)
    except DataError:
        return TokenCount(None, f"{location} has bad rows (recipe data check)")
    texts = ["\n".join(str(m.get("content") or "") for m in e.messages) for e in examples]
    encoder = _local_tokenizer(recipe.model.base)
    if encoder is None:
        return TokenCount(sum(len(t) for t in texts) // CHARS_PER_TOKEN, "characters/4")
    lengths = [len(ids) for ids in encoder(texts)]
    # Chat templates add a few tokens per message; count them with a flat allowance.
    overhead = sum(4 * len(e.messages) for e in examples)
    return TokenCount(sum(lengths) + overhead, "tokenizer")


def _local_tokenizer(base: str):  # type: ignore[no-untyped-def]
    """A fast batch encoder for tokenizer.json when the base model is on this disk."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    from training_scripts.modeling import BUILTIN_DIR

    directory = BUILTIN_DIR / base.split(":", 1)[1] if base.startswith("builtin:") else Path(base)
    file = directory / "tokenizer.json"
    if not file.is_file():
        return None
    tokenizer = Tokenizer.from_file(str(file))
    return lambda texts: [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def model_parameters(base: str) -> tuple[float, str]:
    """Parameter count from the builtin table or the model's name ("...-8B-..."), else 7B."""
    if base in BUILTIN_PARAMS:
        return BUILTIN_PARAMS[base], "builtin"
    match = re.search(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bBmM])(?![a-zA-Z])", Path(base).name)
    if match:
        scale = 1e9 if match.group(2).lower() == "b" else 1e6
        return float(match.group(1)) * scale, "from the model name"
    return DEFAULT_PARAMS, "assumed (name gives no size)"


def tokens_per_second(offer: Offer, recipe: Recipe, catalog: Catalog) -> float:
    """Aggregate training tokens/s of one node of `offer`."""
    params, _ = model_parameters(recipe.model.base)
    method = METHOD_SPEED[recipe.method.kind]
    if offer.gpus == 0:
        return CPU_TOKENS_PER_S_PER_VCPU_1M_PARAMS * offer.vcpus * (1e6 / params) * method
    per_gpu = catalog.accelerators[offer.accelerator].tokens_per_s_per_gpu_7b_lora
    return per_gpu * (7e9 / params) * method * offer.gpus


def estimate(recipe: Recipe, offer: Offer, region: str, catalog: Catalog | None = None) -> Estimate:
    catalog = catalog or load()
    compute = recipe.compute
    price = offer.price(region)
    assert price is not None, "resolve() only returns offers priced in the region"
    count = training_tokens(recipe)
    throughput = tokens_per_second(offer, recipe, catalog) * compute.nodes
    if compute.nodes > 1:
        throughput *= MULTI_NODE_EFFICIENCY
    max_hours = compute.max_runtime / 3600
    params, params_basis = model_parameters(recipe.model.base)
    if count.tokens is None or throughput <= 0:
        hours = max_hours
        how = f"training tokens unknown ({count.method}): priced at max_runtime"
    else:
        total = count.tokens * recipe.training.epochs
        hours = min(max_hours, STARTUP_HOURS + total / throughput / 3600)
        how = (
            f"{total:,.0f} training tokens ({count.tokens:,} x {recipe.training.epochs:g} epochs, "
            f"{count.method}) at {throughput:,.0f} tokens/s "
            f"({params / 1e9:.3g}B params {params_basis}, {recipe.method.kind}) "
            f"+ {STARTUP_HOURS:g} h start-up"
        )
    nodes = compute.nodes
    return Estimate(
        hours=round(hours, 3),
        on_demand_usd=round(hours * price.on_demand * nodes, 2),
        spot_usd=None if price.spot is None else round(hours * price.spot * nodes, 2),
        basis=(
            f"{how}; {nodes} x {offer.instance_type} at ${price.on_demand:.3f}/h on demand"
            + (f", ${price.spot:.3f}/h spot" if price.spot is not None else "")
            + f" in {region} (catalog {catalog.version}, prices as of {offer.as_of})"
        ),
        training_tokens=count.tokens,
        worst_case_usd=round(max_hours * price.on_demand * nodes, 2),
    )


def expected_cost(recipe: Recipe, estimate: Estimate) -> float:
    """What the run is expected to cost as asked: the spot figure when it runs on spot."""
    if recipe.compute.spot and estimate.spot_usd is not None:
        return estimate.spot_usd
    return estimate.on_demand_usd
