"""Pieces of the training script, checked exactly: masking, splits, batching, metrics, paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training_scripts import evaluate, gates, platforms
from training_scripts.data import (
    IGNORE_INDEX,
    DataError,
    Example,
    encode,
    micro_batches,
    read_examples,
    split,
)
from training_scripts.gates import check_gates
from training_scripts.modeling import BUILTIN_DIR, SetupError, resolve_base

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Card stolen!"},
    {"role": "assistant", "content": "card_lost_stolen"},
    {"role": "user", "content": "And a refund?"},
    {"role": "assistant", "content": "billing_dispute"},
]


@pytest.fixture(scope="module")
def tokenizer():
    transformers = pytest.importorskip("transformers")
    return transformers.AutoTokenizer.from_pretrained(BUILTIN_DIR / "tiny-chat")


def trained_text(tokenizer, encoded) -> str:
    return tokenizer.decode([t for t in encoded.labels if t != IGNORE_INDEX])


def test_assistant_masking_trains_exactly_the_answers(tokenizer) -> None:
    encoded = encode(Example(CONVERSATION, line=1), tokenizer, "assistant")
    assert len(encoded.input_ids) == len(encoded.labels)
    assert trained_text(tokenizer, encoded) == (
        "card_lost_stolen<|im_end|>\nbilling_dispute<|im_end|>\n"
    )
    # The whole conversation is still the input, exactly as the template renders it.
    full = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    assert tokenizer.decode(encoded.input_ids) == full


def test_last_assistant_and_all(tokenizer) -> None:
    last = encode(Example(CONVERSATION, line=1), tokenizer, "last_assistant")
    assert trained_text(tokenizer, last) == "billing_dispute<|im_end|>\n"
    every = encode(Example(CONVERSATION, line=1), tokenizer, "all")
    assert IGNORE_INDEX not in every.labels


def test_weight_zero_message_is_not_trained(tokenizer) -> None:
    messages = [dict(m) for m in CONVERSATION]
    messages[2]["weight"] = 0
    encoded = encode(Example(messages, line=1), tokenizer, "assistant")
    assert trained_text(tokenizer, encoded) == "billing_dispute<|im_end|>\n"


def test_bad_rows_are_reported_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    rows = [
        json.dumps({"messages": CONVERSATION}),
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"messages": []}),
        json.dumps({"messages": [{"role": "robot", "content": "x"}]}),
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
    ]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError) as info:
        read_examples(path)
    text = str(info.value)
    assert f"{path}:2: invalid JSON" in text
    assert f"{path}:3: expected a JSON object" in text
    assert f"{path}:4: messages: missing or empty" in text
    assert f"{path}:5: messages[0].role: 'robot'" in text
    assert f"{path}:6: messages: no assistant message" in text
    assert ":1:" not in text


def test_empty_and_non_utf8_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_examples(empty)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"messages": []}\n{"x": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin.jsonl:2: not UTF-8"):
        read_examples(latin)


def test_split_is_deterministic_and_disjoint() -> None:
    examples = [Example([{"role": "assistant", "content": str(i)}], line=i) for i in range(100)]
    train, valid = split(examples, 0.1, seed=7)
    again_train, again_valid = split(examples, 0.1, seed=7)
    assert [e.line for e in valid] == [e.line for e in again_valid]
    assert len(valid) == 10 and len(train) == 90
    assert not {e.line for e in train} & {e.line for e in valid}
    assert [e.line for e in split(examples, 0.1, seed=8)[1]] != [e.line for e in valid]


def test_micro_batches_cover_everything_once_per_epoch() -> None:
    lengths = [i % 37 + 1 for i in range(203)]
    batches = micro_batches(lengths, 4, seed=1, epoch=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(203))
    assert batches == micro_batches(lengths, 4, seed=1, epoch=0)
    assert batches != micro_batches(lengths, 4, seed=1, epoch=1)


def test_macro_f1() -> None:
    gold = ["a", "a", "b", "b", "c"]
    pred = ["a", "b", "b", "b", "nonsense"]
    result = evaluate.macro_f1(gold, pred)
    # a: p=1 r=.5 f=.667; b: p=.667 r=1 f=.8; c: p=0 r=0 f=0
    assert result["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    assert result["invalid_answers"] == 1


def test_task_choice_and_normalization() -> None:
    assert evaluate.choose_task("auto", ["yes", "no", "yes", "no"]) == "classification"
    assert evaluate.choose_task("auto", [f"answer {i}" for i in range(10)]) == "exact_match"
    assert evaluate.normalize("  Billing_Dispute.\nextra") == "billing_dispute"


def test_gates() -> None:
    after = {"valid_loss": 0.5, "golden": {"macro_f1": 0.7, "exact_match": 0.7}}
    results = check_gates({"macro_f1_min": 0.8, "valid_loss_max": 1.0}, after)
    assert [r["passed"] for r in results] == [False, True]
    assert results[0]["text"] == "macro_f1 0.7000 >= 0.8"
    assert results[0] == {
        "gate": "macro_f1_min",
        "value": 0.7,
        "threshold": 0.8,
        "passed": False,
        "text": "macro_f1 0.7000 >= 0.8",
    }


def test_gates_pure_api() -> None:
    """gates dict + flat metrics -> one result per gate set, in the gates' order."""
    results = gates.check(
        {"error_rate_max": 0.01, "p95_ms_max": 800.0, "json_valid_min": None},
        {"error_rate": 0.02, "p95_ms": 640.0},
    )
    assert [(r.name, r.threshold, r.value, r.passed) for r in results] == [
        ("error_rate_max", 0.01, 0.02, False),
        ("p95_ms_max", 800.0, 640.0, True),
    ]
    assert gates.failed(results) == ["error_rate 0.0200 <= 0.01"]
    missing = gates.check({"exact_match_min": 0.5}, {})
    assert not missing[0].passed and missing[0].text == "exact_match n/a >= 0.5"
    assert gates.check({"valid_loss_max": 1.0}, {"valid_loss": 1.0})[0].passed  # bound included
    with pytest.raises(ValueError, match="_min or _max"):
        gates.check({"macro_f1": 0.5}, {"macro_f1": 0.9})


def test_eval_metrics_flattens_golden() -> None:
    after = {"valid_loss": 0.5, "golden": {"macro_f1": 0.7, "examples": 16, "slices": {}}}
    assert gates.eval_metrics(after) == {"valid_loss": 0.5, "macro_f1": 0.7, "examples": 16}


def test_builtin_model_resolution() -> None:
    assert Path(resolve_base("builtin:tiny-chat")).is_dir()
    assert resolve_base("org/model") == "org/model"
    with pytest.raises(SetupError, match="available"):
        resolve_base("builtin:huge")


@pytest.mark.parametrize(
    ("env", "platform", "model_dir", "checkpoints"),
    [
        ({}, "local", "<out>", "<out>/checkpoints"),
        (
            {
                "SM_MODEL_DIR": "/opt/ml/model",
                "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data",
                "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
            },
            "sagemaker",
            "/opt/ml/model",
            "/opt/ml/checkpoints",
        ),
        (
            {"AIP_MODEL_DIR": "gs://b/job/model", "AIP_CHECKPOINT_DIR": "gs://b/job/checkpoints"},
            "vertex",
            "/gcs/b/job/model",
            "/gcs/b/job/checkpoints",
        ),
        ({"AZUREML_RUN_ID": "abc"}, "azureml", "<out>", "<out>/checkpoints"),
    ],
)
def test_platform_paths(tmp_path: Path, env, platform, model_dir, checkpoints) -> None:
    paths = platforms.resolve(str(tmp_path), env)
    assert paths.platform == platform
    assert str(paths.model_dir) == model_dir.replace("<out>", str(tmp_path))
    assert str(paths.checkpoint_dir) == checkpoints.replace("<out>", str(tmp_path))
    if platform == "sagemaker":
        assert paths.channels["train"] == Path("/opt/ml/input/data/train")


def test_generation_budget_fits_the_longest_answer(tokenizer) -> None:
    longest = len(tokenizer("appointment_scheduling", add_special_tokens=False)["input_ids"])
    assert evaluate.generation_budget(tokenizer, ["appointment_scheduling", "a"], 2) == longest + 1
    assert evaluate.generation_budget(tokenizer, ["a"], 32) == 32


def test_slices_by_meta() -> None:
    def example(edges: list[str]) -> Example:
        return Example([{"role": "assistant", "content": "x"}], line=1, meta={"edge": edges})

    examples = [example(["long_ticket"]), example(["long_ticket", "mixed_language"]), example([])]
    result = evaluate.slices(examples, ["a", "b", "c"], ["a", "x", "c"])
    assert result == {
        "edge=long_ticket": {"examples": 2, "exact_match": 0.5},
        "edge=mixed_language": {"examples": 1, "exact_match": 0.0},
    }


def _labelled(text: str, label: str, line: int) -> Example:
    return Example(
        [{"role": "user", "content": text}, {"role": "assistant", "content": label}],
        line=line,
        label=label,
    )


def test_dedupe_exact_and_normalized() -> None:
    from training_scripts.data import dedupe

    rows = [
        _labelled("My card is gone.", "card", 1),
        _labelled("My card is gone.", "card", 2),  # exact
        _labelled("my CARD   is gone", "card", 3),  # normalized
        _labelled("A different ticket", "card", 4),
    ]
    kept, exact, normal = dedupe(rows)
    assert [e.line for e in kept] == [1, 4] and (exact, normal) == (1, 1)


def test_split_is_stratified_and_nothing_crosses() -> None:
    from training_scripts.data import dedupe, normalized_key

    rows = [_labelled(f"ticket {i % 150}", "a" if i % 4 else "b", i) for i in range(300)]
    kept, _, _ = dedupe(rows)  # half are duplicates of the other half
    train, valid = split(kept, 0.2, seed=3)
    assert not {normalized_key(e) for e in train} & {normalized_key(e) for e in valid}
    share = sum(e.label == "b" for e in valid) / len(valid)
    overall = sum(e.label == "b" for e in kept) / len(kept)
    assert share == pytest.approx(overall, abs=0.02)
    assert len(valid) == round(len(kept) * 0.2)


def test_early_stopping_patience() -> None:
    from training_scripts.train import EarlyStopping

    stopper = EarlyStopping(patience=2)
    assert [stopper.update(v) for v in (3.0, 2.0, 2.5, 2.1)] == [False, False, False, True]
    assert stopper.best == 2.0
    assert not any(EarlyStopping(None).update(v) for v in (1.0, 2.0, 3.0, 4.0))


def test_eval_kinds() -> None:
    from training_scripts.train import eval_kinds

    spec = {"eval_every_steps": 5}
    assert eval_kinds(5, 10, 30, spec) == ("sample",)
    assert eval_kinds(10, 10, 30, spec) == ("sample", "full")
    assert eval_kinds(7, 10, 30, {"eval_every_steps": None}) == ()
    assert eval_kinds(30, 10, 30, {"eval_every_steps": None}) == ("full",)


def test_json_scores_with_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"amount": {"type": "number"}},
        "required": ["amount"],
    }
    targets = ['{"amount": 12.5}', '{"amount": 3}', '{"amount": 7}', '{"amount": 1}']
    answers = ['{ "amount" : 12.5 }', '{"amount": "3"}', "not json", "null"]
    result = evaluate.score("json", targets, answers, schema)
    assert result["json_valid"] == 0.75  # "null" is valid JSON
    assert result["schema_valid"] == 0.25  # only the first has a numeric amount
    assert result["exact_match"] == 0.25  # compared as JSON, not as text


def test_checkpoints_never_rename_a_directory(tmp_path, monkeypatch) -> None:
    """Vertex's /gcs is Cloud Storage FUSE, where renaming a directory fails (gcsfuse's
    rename-dir-limit defaults to 0): a checkpoint is complete once meta.json is written."""
    import os

    import torch

    from training_scripts import checkpoints

    real_replace = os.replace

    def files_only(src, dst):  # what gcsfuse allows
        assert not os.path.isdir(src), f"renamed a directory: {src}"
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", files_only)
    monkeypatch.setattr(os, "rename", files_only)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    for step in (1, 2, 3):
        checkpoints.save(tmp_path, step, model, optimizer, scheduler, {"epoch": 0})
    (tmp_path / "step-00000004").mkdir()  # a crash mid-save: no meta.json
    (tmp_path / "step-00000004" / "trainable.pt").write_bytes(b"partial")
    assert checkpoints.latest(tmp_path).name == "step-00000003"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-00000002",
        "step-00000003",
        "step-00000004",
    ]
    assert checkpoints.load(tmp_path / "step-00000003", model, optimizer, scheduler)["step"] == 3
