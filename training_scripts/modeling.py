"""Loading the base model and tokenizer, and attaching the training method."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training_scripts.dropout import use_cheap_dropout

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


class SetupError(Exception):
    """The job cannot start as asked (e.g. qlora without CUDA). Exit code 2."""


def resolve_base(base: str) -> str:
    """builtin:NAME -> the directory shipped beside this file; anything else as given."""
    if base.startswith("builtin:"):
        name = base.split(":", 1)[1]
        path = BUILTIN_DIR / name
        if not (path / "config.json").exists():
            known = sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / "config.json").exists())
            raise SetupError(f"model.base: no builtin model '{name}'; available: {known}")
        return str(path)
    return base


def pick_device(asked: str) -> Any:
    import torch

    if asked == "cuda" and not torch.cuda.is_available():
        raise SetupError("compute.local.device is cuda but no CUDA device is present")
    if asked in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def pick_dtype(recipe: dict[str, Any], device: Any) -> Any:
    import torch

    precision = recipe["training"]["precision"]
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def load_tokenizer(base: str, revision: str | None, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        base, revision=revision, trust_remote_code=trust_remote_code
    )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        raise SetupError(f"model.base: tokenizer of {base} has no chat template")
    return tokenizer


def load_model(recipe: dict[str, Any], base: str, device: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    spec = recipe["model"]
    method = recipe["method"]
    kwargs: dict[str, Any] = {
        "revision": spec["revision"],
        "trust_remote_code": spec["trust_remote_code"],
    }
    if spec["dtype"] != "auto":
        kwargs["dtype"] = getattr(torch, spec["dtype"])
    elif device.type == "cpu":
        kwargs["dtype"] = torch.float32  # CPUs train fastest and safest in fp32
    else:
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cuda" and kwargs["dtype"] != torch.float32 and _has_flash_attention():
        # Its variable-length kernel trains packed rows without a mask (packing.resolve).
        kwargs["attn_implementation"] = "flash_attention_2"
    if method["kind"] == "qlora":
        kwargs["quantization_config"] = _bnb_config(method, device)
        kwargs["device_map"] = {"": device}
    model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    if method["kind"] != "qlora":
        model.to(device)
    return model


def _has_flash_attention() -> bool:
    """flash_attn installed, importable and recent enough, as transformers checks it."""
    from transformers.utils import is_flash_attn_2_available

    return is_flash_attn_2_available()


def _bnb_config(method: dict[str, Any], device: Any) -> Any:
    import torch

    if device.type != "cuda":
        raise SetupError("method.kind qlora needs a CUDA GPU; this job sees none (use lora)")
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError:
        raise SetupError("method.kind qlora needs bitsandbytes: pip install bitsandbytes") from None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=method["quant_type"],
        bnb_4bit_use_double_quant=method["double_quant"],
        bnb_4bit_compute_dtype=getattr(torch, method["compute_dtype"]),
    )


def attach_method(model: Any, recipe: dict[str, Any]) -> Any:
    """Wrap the model for the recipe's method; returns the model to train."""
    method = recipe["method"]
    if recipe["training"]["gradient_checkpointing"]:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if method["kind"] == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if method["kind"] == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=recipe["training"]["gradient_checkpointing"]
        )
    config = LoraConfig(
        r=method["r"],
        lora_alpha=method["alpha"],
        lora_dropout=method["dropout"],
        target_modules=method["target_modules"],
        modules_to_save=method["modules_to_save"] or None,
        use_dora=method["dora"],
        use_rslora=method["rslora"],
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    if next(model.parameters()).device.type == "cpu":
        use_cheap_dropout(model)  # torch's CPU dropout mask was a quarter of each step
    return model


def count_parameters(model: Any) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
