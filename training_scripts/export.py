"""Export a finished run: the adapter as is, or merged into the base weights.

Merging is checked, not trusted: the validation loss is measured with the adapter
attached and again after the merge, and both are reported.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from training_scripts import contract, modeling, platforms
from training_scripts.distributed import Dist
from training_scripts.evaluate import validation_loss
from training_scripts.modeling import SetupError
from training_scripts.pipeline import load_data


def export(run_dir: Path, merge: bool, output: Path | None) -> dict[str, Any]:
    config = contract.load_config(run_dir / "recipe.json")
    recipe = config["recipe"]
    if recipe["method"]["kind"] == "full":
        raise SetupError("a full fine-tune has no adapter to merge: its model/ is the export")
    adapter = run_dir / "adapter"
    if not (adapter / "adapter_config.json").exists():
        raise SetupError(f"no adapter in {run_dir} (did the run finish?)")
    output = output or run_dir / ("merged" if merge else "export")
    if output.exists():
        raise SetupError(f"output already exists: {output}")

    import torch
    from peft import PeftModel

    device = torch.device("cpu")
    base = modeling.resolve_base(recipe["model"]["base"])
    tokenizer = modeling.load_tokenizer(
        base, recipe["model"]["revision"], recipe["model"]["trust_remote_code"]
    )
    data = load_data(recipe, platforms.resolve(str(run_dir), env={}), tokenizer, Dist())
    # Merge into full-precision weights, also for qlora: 4-bit weights cannot hold the sum.
    plain = {**recipe, "method": {**recipe["method"], "kind": "lora"}}
    plain["model"] = {**recipe["model"], "dtype": "float32"}
    model = PeftModel.from_pretrained(modeling.load_model(plain, base, device), adapter)
    batch = recipe["training"]["micro_batch_size"] * 2
    pad = tokenizer.pad_token_id
    with_adapter = validation_loss(model, data.valid, pad, batch, device)
    result: dict[str, Any] = {
        "run_dir": str(run_dir),
        "output": str(output),
        "merged": merge,
        "valid_loss_with_adapter": with_adapter,
    }
    if merge:
        merged = model.merge_and_unload()
        after = validation_loss(merged, data.valid, pad, batch, device)
        merged.save_pretrained(output)
        tokenizer.save_pretrained(output)
        result["valid_loss_merged"] = after
        if with_adapter is not None and after is not None:
            result["difference"] = after - with_adapter
    else:
        shutil.copytree(adapter, output)
    return result
