"""Which models a server serves: resolve a source into a base and adapters, then load them.

Resolution reads only small JSON files (no torch), so `check()` is instant and a bad
path is a RecipeInputError naming it. Rules for `source`:

- `builtin:NAME`: the model shipped in training_scripts/builtin/.
- a run directory (recipe.json): its LoRA adapter `adapter/`, served under the recipe's
  name on `recipe.model.base` (the base stays addressable by its own id). We prefer the
  adapter over `merged/` on purpose: the export already checked that both give the
  same loss, and an adapter shares the base (and its batches) with other adapters. A
  run without an adapter (a full fine-tune's `model/`, or only `merged/`) is served as a
  full model under the recipe's name.
- a PEFT adapter directory (adapter_config.json): named after the directory, on the
  base named in `base_model_name_or_path` (a path into training_scripts/builtin/,
  possibly from another checkout, maps back to `builtin:NAME`).
- a model directory (config.json): served under the path as given (like vLLM).
- anything else is a hub id, served only when already in the local cache: nothing is
  downloaded at serve time.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recipes.errors import Problem, RecipeInputError
from training_scripts.modeling import BUILTIN_DIR, SetupError, resolve_base

# peft keys adapters in torch ModuleDicts: no dots. Served names are mapped to these.
BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in a mixed batch


@dataclass(frozen=True)
class BaseSpec:
    id: str  # the served model id
    location: str  # a local directory or a hub id
    revision: str | None = None
    trust_remote_code: bool = False


@dataclass(frozen=True)
class AdapterSpec:
    name: str  # the served model id
    path: Path  # the adapter directory (adapter_config.json)


@dataclass(frozen=True)
class ResolvedModels:
    base: BaseSpec
    adapters: tuple[AdapterSpec, ...] = field(default_factory=tuple)

    def ids(self) -> list[str]:
        return [self.base.id, *(a.name for a in self.adapters)]


def _fail(message: str, field_name: str = "source", hint: str | None = None) -> RecipeInputError:
    return RecipeInputError(Problem(message, file="command line", field=field_name, hint=hint))


def _read_json(path: Path, field_name: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _fail(f"{path}: cannot read: {exc}", field_name) from None
    if not isinstance(data, dict):
        raise _fail(f"{path}: expected a JSON object", field_name)
    return data


def _builtin_for(path_text: str) -> str | None:
    """`.../training_scripts/builtin/NAME` (this checkout or another) -> builtin:NAME."""
    path = Path(path_text)
    try:
        if path.exists() and path.resolve().parent == BUILTIN_DIR:
            return f"builtin:{path.resolve().name}"
    except OSError:
        return None
    parts = path.parts
    in_builtin = len(parts) >= 3 and parts[-3:-1] == ("training_scripts", "builtin")
    if in_builtin and (BUILTIN_DIR / parts[-1] / "config.json").exists():
        return f"builtin:{parts[-1]}"
    return None


def base_key(location: str) -> str:
    """A canonical key to compare bases: builtin:NAME, an absolute path, or the hub id."""
    if location.startswith("builtin:"):
        return location
    builtin = _builtin_for(location)
    if builtin:
        return builtin
    path = Path(location).expanduser()
    return str(path.resolve()) if path.exists() else location


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _base_spec(location: str, revision: str | None, trust: bool, field_name: str) -> BaseSpec:
    """A base model by builtin name, local directory or cached hub id."""
    if location.startswith("builtin:"):
        try:
            return BaseSpec(location, resolve_base(location), revision, trust)
        except SetupError as exc:
            raise _fail(str(exc).removeprefix("model.base: "), field_name) from None
    builtin = _builtin_for(location)
    if builtin:
        return BaseSpec(builtin, resolve_base(builtin), revision, trust)
    path = Path(location).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise _fail(f"{location}: not a model directory (no config.json)", field_name)
        return BaseSpec(location, str(path), revision, trust)
    if location.startswith((".", "/", "~")) or not _HUB_ID.match(location):
        raise _fail(f"{location}: no such model directory", field_name)
    return BaseSpec(location, location, revision, trust)


def _check_cached(base: BaseSpec, field_name: str) -> None:
    """A hub id must already be in the local Hugging Face cache."""
    if Path(base.location).exists():
        return
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers depends on it
        found = None
    else:
        found = try_to_load_from_cache(base.location, "config.json", revision=base.revision)
    if not isinstance(found, str):
        raise _fail(
            f"{base.location}: not a local directory, and not in the local Hugging Face "
            "cache; nothing is downloaded at serve time",
            field_name,
            hint=f"download it first: huggingface-cli download {base.location}",
        )


def _adapter_dir(path: Path, field_name: str) -> Path:
    """An adapter directory, or a run directory's adapter/, checked to be LoRA."""
    if (path / "recipe.json").is_file() and (path / "adapter").is_dir():
        path = path / "adapter"
    config_path = path / "adapter_config.json"
    if not config_path.is_file():
        raise _fail(f"{path}: not a PEFT adapter directory (no adapter_config.json)", field_name)
    config = _read_json(config_path, field_name)
    if config.get("peft_type") != "LORA":
        raise _fail(
            f"{config_path}: peft_type is {config.get('peft_type')!r}; only LORA adapters "
            "can be served (several on one base, batched together)",
            field_name,
        )
    return path


def _adapter_base(path: Path, field_name: str) -> str:
    base = _read_json(path / "adapter_config.json", field_name).get("base_model_name_or_path")
    if not isinstance(base, str) or not base:
        raise _fail(f"{path}/adapter_config.json: no base_model_name_or_path", field_name)
    return _builtin_for(base) or base


def _run_recipe(run_dir: Path) -> dict[str, Any]:
    data = _read_json(run_dir / "recipe.json", "source")
    recipe = data.get("recipe")
    if not isinstance(recipe, dict) or not isinstance(recipe.get("model"), dict):
        raise _fail(f"{run_dir}/recipe.json: no resolved recipe (expected a 'recipe' object)")
    if not isinstance(recipe.get("name"), str) or not isinstance(recipe["model"].get("base"), str):
        raise _fail(f"{run_dir}/recipe.json: recipe.name and recipe.model.base are required")
    return recipe


def _resolve_source(source: str) -> tuple[BaseSpec, list[AdapterSpec]]:
    if not source.strip():
        raise _fail("is empty; expected a run directory, a model directory or a model id")
    path = Path(source).expanduser()
    if source.startswith("builtin:") or not path.exists():
        return _base_spec(source, None, False, "source"), []
    if not path.is_dir():
        raise _fail(f"{source}: is a file; expected a directory")
    if (path / "adapter_config.json").is_file() and (path.parent / "recipe.json").is_file():
        path = path.parent  # a run's adapter/: named after the run's recipe
    if (path / "recipe.json").is_file():
        recipe = _run_recipe(path)
        model = recipe["model"]
        revision, trust = model.get("revision"), bool(model.get("trust_remote_code"))
        if (path / "adapter" / "adapter_config.json").is_file():
            base = _base_spec(model["base"], revision, trust, "source")
            return base, [AdapterSpec(recipe["name"], _adapter_dir(path, "source"))]
        for name in ("merged", "model"):
            if (path / name / "config.json").is_file():
                return BaseSpec(recipe["name"], str(path / name), None, trust), []
        raise _fail(
            f"{source}: a run directory without adapter/, merged/ or model/ "
            "(did the run finish? see `recipe status`)"
        )
    if (path / "adapter_config.json").is_file():
        adapter = _adapter_dir(path, "source")
        base = _base_spec(_adapter_base(adapter, "source"), None, False, "source")
        return base, [AdapterSpec(path.resolve().name, adapter)]
    if (path / "config.json").is_file():
        return BaseSpec(source, str(path)), []
    raise _fail(
        f"{source}: not a run directory (recipe.json), a PEFT adapter (adapter_config.json) "
        "or a model directory (config.json)"
    )


def resolve(source: str, adapters: dict[str, str]) -> ResolvedModels:
    """Base and adapters, checked against each other; RecipeInputError on any problem."""
    base, found = _resolve_source(source)
    _check_cached(base, "source")
    problems: list[Problem] = []
    taken = {base.id: "the base model"}
    for spec in found:
        taken[spec.name] = "the source's adapter"
    for name, location in adapters.items():
        field_name = f"adapters.{name}"
        try:
            if not name or name != name.strip() or any(c.isspace() for c in name):
                raise _fail("an adapter name must be non-empty with no spaces", field_name)
            if name in taken:
                raise _fail(f"the name is already used by {taken[name]}", field_name)
            path = Path(location).expanduser()
            if not path.is_dir():
                raise _fail(f"{location}: no such directory", field_name)
            adapter = _adapter_dir(path, field_name)
            trained_on = _adapter_base(adapter, field_name)
            if base_key(trained_on) != base_key(base.location) and trained_on != base.id:
                raise _fail(
                    f"{location} was trained on {trained_on!r}, but the served base is "
                    f"{base.id!r}; all adapters must share one base",
                    field_name,
                )
            taken[name] = str(adapter)
            found.append(AdapterSpec(name, adapter))
        except RecipeInputError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RecipeInputError(problems)
    return ResolvedModels(base, tuple(found))


# ---------------------------------------------------------------------------------------
# Loading (torch, transformers, peft): only when the server really starts.


@dataclass
class ServedModel:
    """One served model id: the base (peft_name BASE_ADAPTER) or an adapter."""

    id: str
    root: str  # where it came from: the base location or the adapter directory
    parent: str | None  # the base id for an adapter (vLLM's LoRA model cards do the same)
    peft_name: str  # the adapter's key inside the PeftModel, or BASE_ADAPTER
    tokenizer: Any
    eos_ids: frozenset[int]


@dataclass
class LoadedModels:
    model: Any  # a PreTrainedModel, or a PeftModel holding every adapter
    served: dict[str, ServedModel]
    max_model_len: int
    device: Any
    has_adapters: bool


def _context_length(model: Any, tokenizer: Any) -> int:
    limits = [getattr(model.config, "max_position_embeddings", None)]
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and limit < 10**7:  # transformers' "unset" is a huge int
        limits.append(limit)
    known = [n for n in limits if isinstance(n, int) and n > 0]
    return min(known) if known else 2048


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    generation = getattr(model, "generation_config", None)
    for value in (getattr(generation, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return frozenset(ids)


def load(resolved: ResolvedModels, max_model_len: int | None) -> LoadedModels:
    """The base on the best device, every adapter loaded into one PeftModel."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training_scripts.modeling import pick_device

    base = resolved.base
    device = pick_device("auto")
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.float32  # CPU kernels are fastest and exact in fp32
    options = {
        "revision": base.revision,
        "trust_remote_code": base.trust_remote_code,
        "local_files_only": True,  # never download at serve time
    }
    try:
        tokenizer = AutoTokenizer.from_pretrained(base.location, **options)
        model = AutoModelForCausalLM.from_pretrained(base.location, dtype=dtype, **options)
    except Exception as exc:  # safetensors' SafetensorError is a bare Exception, too
        raise _fail(f"{base.location}: cannot load the model: {_reason(exc)}") from None
    model.to(device)
    context = _context_length(model, tokenizer)
    if max_model_len is not None:
        if max_model_len > context:
            raise _fail(
                f"got {max_model_len}; the model handles at most {context} tokens",
                "max_model_len",
            )
        context = max_model_len
    served = {
        base.id: ServedModel(
            base.id, base.location, None, BASE_ADAPTER, tokenizer, _eos_ids(model, tokenizer)
        )
    }
    if resolved.adapters:
        model = _attach_adapters(model, resolved.adapters)
        for index, spec in enumerate(resolved.adapters):
            own = _adapter_tokenizer(spec, tokenizer)
            served[spec.name] = ServedModel(
                spec.name,
                str(spec.path),
                base.id,
                f"a{index}",
                own,
                _eos_ids(model, own),
            )
    model.eval()  # LoRA dropout off
    return LoadedModels(model, served, context, device, bool(resolved.adapters))


def _attach_adapters(model: Any, adapters: tuple[AdapterSpec, ...]) -> Any:
    from peft import PeftModel

    spec = adapters[0]
    try:
        peft_model = PeftModel.from_pretrained(model, spec.path, adapter_name="a0")
        for index, spec in enumerate(adapters[1:], start=1):
            peft_model.load_adapter(spec.path, adapter_name=f"a{index}")
    except Exception as exc:  # a corrupt file raises anything (SafetensorError: Exception)
        raise _fail(f"{spec.path}: cannot load adapter: {_reason(exc)}", "adapters") from None
    return peft_model


def _reason(exc: Exception) -> str:
    """An exception as one line: its first non-empty line, or its type's name."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def _adapter_tokenizer(spec: AdapterSpec, base_tokenizer: Any) -> Any:
    """The adapter's own tokenizer (its chat template may differ), when it ships one."""
    if not (spec.path / "tokenizer_config.json").is_file():
        return base_tokenizer
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(spec.path, local_files_only=True)
    except Exception as exc:  # a corrupt tokenizer.json raises tokenizers' own Exception
        field_name = f"adapters.{spec.name}"
        raise _fail(f"{spec.path}: cannot load its tokenizer: {_reason(exc)}", field_name) from None
    if len(tokenizer) != len(base_tokenizer):
        raise _fail(
            f"{spec.path}: its tokenizer has {len(tokenizer)} tokens, the base's "
            f"{len(base_tokenizer)}; adapters that add tokens cannot share a base",
            f"adapters.{spec.name}",
        )
    return tokenizer
