"""Bad input, tried as a new user would, through the CLI: exit 2 and one located message
naming file, line, field and expectation; never a traceback, never a hang (issue 10)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from recipes.errors import RecipeInputError, short_repr
from recipes.loader import load_recipe
from recipes.tags import TagPolicy
from tests.conftest import CLI, QUICKSTART
from training_scripts.rows import parse_rows

QUICK = QUICKSTART.read_text()
GOOD_ROW = {
    "messages": [
        {"role": "user", "content": "My card was stolen."},
        {"role": "assistant", "content": "card_lost_stolen"},
    ]
}


def refused(result, *fragments: str, lines: int | None = 1) -> str:
    """Exit 2, no traceback, the expected words; `lines` problems when given."""
    err = result.stderr
    assert result.returncode == 2, (result.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    for fragment in fragments:
        assert fragment in err, (fragment, err[-2000:])
    if lines is not None:
        assert len(err.strip().splitlines()) == lines, err[-2000:]
    return err


def quickstart(tmp_path: Path, old: str, new: str, name: str = "recipe.yaml") -> Path:
    """The quickstart recipe with one edit, next to it so its data paths resolve."""
    assert old in QUICK
    text = QUICK.replace(old, new, 1).replace("data/support/", f"{QUICKSTART.parent}/data/support/")
    path = tmp_path / name
    path.write_text(text)
    return path


# --- YAML ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Before: a 20-line yaml.constructor.ConstructorError traceback, exit 1.
        ("!!python/name:os.system", "the YAML tag !!python/name:os.system is not allowed"),
        ("!!python/object/apply:os.system [echo hi]", "!!python/object/apply:os.system"),
        # Before: ValueError: invalid literal for int() with base 10: 'abc', exit 1.
        ("!!int abc", "'abc' is not a valid !!int"),
        ("!!float x", "'x' is not a valid !!float"),
        ("!!bool maybe", "'maybe' is not a valid !!bool"),
        ("!!binary aGVsbG8=", "the YAML tag !!binary is not allowed"),
        ("!!set {a, b}", "the YAML tag !!set is not allowed"),
        ("!foo 2", "the YAML tag !foo is not allowed"),
        # Before: ValueError: Exceeds the limit (4300 digits), exit 1.
        ("9" * 5000, "has more digits than a number may have"),
        # Before: ValueError: month must be in 1..12, exit 1.
        ("2024-13-45", "'2024-13-45' is not a valid !!timestamp"),
        ('"\\ud800"', "lone surrogate"),
    ],
)
def test_yaml_values_refused_at_their_line(
    cli: CLI, tmp_path: Path, value: str, expected: str
) -> None:
    path = quickstart(tmp_path, "epochs: 2", f"epochs: {value}")
    err = refused(cli("validate", path), expected)
    assert err.startswith(f"{path}:16:11: training.epochs: "), err


def test_a_yaml_directive_with_too_many_digits(tmp_path: Path) -> None:
    """Found by tests/test_properties.py. Before: ValueError from PyYAML's scanner."""
    path = tmp_path / "recipe.yaml"
    path.write_text("%YAML 1." + "9" * 5000 + "\n---\nname: x\n")
    with pytest.raises(RecipeInputError, match="invalid YAML"):
        load_recipe(path)


def test_alias_bomb_is_refused_quickly(cli: CLI, tmp_path: Path) -> None:
    """Before: a hang, over 1 GB of memory after 30 s (killed)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    started = time.monotonic()
    result = cli("validate", path, timeout=30)
    assert time.monotonic() - started < 10
    refused(result, f"{path}:", "values once aliases (*name) are expanded")


def test_alias_bomb_in_process_is_refused_in_well_under_a_second(tmp_path: Path) -> None:
    lines = ["a: &a [" + ",".join(["x"] * 10) + "]"]
    for prev, name in zip("abcdefghijk", "bcdefghijkl", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines))
    started = time.perf_counter()
    with pytest.raises(RecipeInputError):
        load_recipe(path)
    assert time.perf_counter() - started < 1.0


def test_anchors_and_aliases_of_reasonable_size_still_work(tmp_path: Path) -> None:
    path = quickstart(tmp_path, "tags: {project: quickstart,", "tags: {project: &p quickstart,")
    path.write_text(path.read_text().replace("owner: ml-platform", "owner: *p"))
    assert load_recipe(path).recipe.tags["owner"] == "quickstart"


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_deep_nesting_is_refused(cli: CLI, tmp_path: Path, opening: str) -> None:
    """Before: RecursionError traceback, exit 1."""
    closing = "]" if opening == "[" else "}"
    path = tmp_path / "deep.yaml"
    path.write_text("name: x\nmodel: " + opening * 5000 + "1" + closing * 5000 + "\n")
    refused(cli("validate", path), f"{path}:2:", "nested more than 64 levels deep")


def test_invalid_utf8_names_its_line_and_column(cli: CLI, tmp_path: Path) -> None:
    """Before: `recipe.yaml: not UTF-8 text (byte 270)`, no line."""
    path = tmp_path / "recipe.yaml"
    path.write_bytes(QUICK.encode().replace(b"description: Route", b"description: R\xff\xfeoute"))
    line = QUICK[: QUICK.index("description:")].count("\n") + 1
    refused(cli("validate", path), f"{path}:{line}:15: not UTF-8 text (byte 0xff)")


def test_utf16_recipe_says_utf16(cli: CLI, tmp_path: Path) -> None:
    path = tmp_path / "recipe.yaml"
    path.write_text(QUICK, encoding="utf-16")
    refused(cli("validate", path), f"{path}: the file is UTF-16")


def test_a_directory_as_recipe(cli: CLI, tmp_path: Path) -> None:
    refused(cli("validate", tmp_path), f"{tmp_path}: is a directory; expected a YAML file")


# --- numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "field", "expected"),
    [
        # Before: OverflowError: cannot convert float infinity to integer, exit 1.
        (
            "accelerator: cpu",
            "accelerator: cpu\n  max_runtime: .inf",
            "compute.max_runtime",
            "finite",
        ),
        (
            "accelerator: cpu",
            "accelerator: cpu\n  max_runtime: .nan",
            "compute.max_runtime",
            "finite",
        ),
        # Before: "Input should be less than or equal to 1000; got nan".
        ("epochs: 2", "epochs: .nan", "training.epochs", "finite number"),
        ("epochs: 2", "epochs: .inf", "training.epochs", "finite number"),
        ("batch_size: 16", "batch_size: -.inf", "training.batch_size", "finite number"),
        ("micro_batch_size: 8", "micro_batch_size: .inf", "training.micro_batch_size", "finite"),
        ("learning_rate: 2.0e-3", "learning_rate: .nan", "training.learning_rate", "finite"),
        ("dropout: 0.05", "dropout: .nan", "method.dropout", "finite number"),
        ("validation: 0.1 ", "validation: .nan ", "data.validation", "between 0 and 1"),
        ("macro_f1_min: 0.6", "macro_f1_min: .nan", "eval.gates.macro_f1_min", "finite"),
    ],
)
def test_inf_and_nan_refused_with_the_field(
    cli: CLI, tmp_path: Path, old: str, new: str, field: str, expected: str
) -> None:
    path = quickstart(tmp_path, old, new)
    err = refused(cli("validate", path), f": {field}: ", expected)
    assert err.startswith(f"{path}:"), err


def test_inf_duration_from_the_command_line(cli: CLI) -> None:
    refused(
        cli("validate", QUICKSTART, "compute.max_runtime=.inf"),
        "command line: compute.max_runtime: a duration must be a finite number",
        "(from 'compute.max_runtime=.inf')",
    )


# --- RECIPE_TAG_POLICY ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("[project, owner]\n", ":1:1: expected a mapping; a tag policy is"),
        ('"just a string"\n', ":1:1: expected a mapping"),
        ("required: 5\n", ":1:1: required: expected a list of tag keys; got 5"),
        # Before: accepted, and 'dev' was checked against the letters d, e, v.
        ("allowed: {env: dev}\n", ":1:11: allowed.env: expected a list of allowed values"),
        # Before: AttributeError: 'list' object has no attribute 'items', exit 1.
        ("allowed: [1]\n", ":1:1: allowed: expected a mapping"),
        ("required: [{a: 1}]\n", ":1:12: required[0]: expected a tag key; got a mapping"),
        ("requird: [owner]\n", ":1:1: requird: unknown key"),
        # Before: a multi-line PyYAML message.
        ("required: [a\n", ":2:1: invalid YAML"),
        ("required: !!python/name:os.system\n", ":1:11: required: the YAML tag !!python/name"),
    ],
)
def test_tag_policy_of_the_wrong_shape(
    cli: CLI, tmp_path: Path, policy: str, expected: str
) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(policy)
    cli.env["RECIPE_TAG_POLICY"] = str(path)
    refused(cli("validate", QUICKSTART), f"{path}{expected}", "RECIPE_TAG_POLICY")
    refused(cli("plan", QUICKSTART), f"{path}{expected}")


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_tag_policy_missing_or_a_directory(cli: CLI, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "policy.yaml"
    if kind == "directory":
        path.mkdir()
    cli.env["RECIPE_TAG_POLICY"] = str(path)
    expected = "file not found" if kind == "missing" else "is a directory"
    refused(cli("validate", QUICKSTART), f"{path}: {expected}", "RECIPE_TAG_POLICY")


def test_tag_policy_of_the_right_shape_still_applies(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("required: [project, cost_center]\nallowed: {env: [dev, prod], n: [1]}\n")
    policy = TagPolicy.from_file(path)
    assert policy.required == ("project", "cost_center")
    assert policy.allowed == {"env": ("dev", "prod"), "n": ("1",)}


# --- data rows -----------------------------------------------------------------------------

DATA_DEFECTS = {
    # Before: RecursionError traceback, exit 1.
    "deep": ("[" * 100_000 + "]" * 100_000, "JSON nested more than 64 levels deep"),
    "deep-meta": (
        json.dumps({**GOOD_ROW, "meta": json.loads("[" * 200 + "]" * 200)}),
        "JSON nested more than 64 levels deep",
    ),
    # Before: ValueError: Exceeds the limit (4300 digits), exit 1.
    "bigint": ('{"messages": [], "id": ' + "9" * 5000 + "}", "invalid JSON: an integer with more"),
    # Before: TypeError from the tokenizer, exit 1.
    "surrogate": (
        json.dumps(GOOD_ROW).replace("stolen.", "stolen \\ud800"),
        "messages[0].content: not valid Unicode text, a lone surrogate '\\ud800'",
    ),
}


@pytest.mark.parametrize("defect", sorted(DATA_DEFECTS))
def test_bad_rows_in_data_check(cli: CLI, tmp_path: Path, defect: str) -> None:
    line, expected = DATA_DEFECTS[defect]
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(GOOD_ROW) + "\n" + line + "\n")
    result = cli("data", "check", path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"{path}:2: error {expected}" in result.stdout, result.stdout[-2000:]


@pytest.mark.parametrize("defect", sorted(DATA_DEFECTS))
def test_bad_rows_in_the_preflight_of_run(cli: CLI, tmp_path: Path, defect: str) -> None:
    line, expected = DATA_DEFECTS[defect]
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(GOOD_ROW) + "\n" + line + "\n")
    result = cli("run", QUICKSTART, f"data.train={path}")
    refused(result, f"{path}:2: data.train: {expected}")


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_data_says_utf16(cli: CLI, tmp_path: Path, encoding: str) -> None:
    """Before: 'not UTF-8 (byte 0 of the line)' or 'invalid JSON' on every line."""
    path = tmp_path / "data.jsonl"
    path.write_text((json.dumps(GOOD_ROW) + "\n") * 3, encoding=encoding)
    result = cli("data", "check", path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{path}: error the file is UTF-16 text; JSON Lines must be UTF-8" in result.stdout


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(GOOD_ROW) + "\n", encoding="utf-8-sig")
    examples, problems = parse_rows(path)
    assert len(examples) == 1 and not problems


def test_a_directory_as_data(cli: CLI, tmp_path: Path) -> None:
    """Before: IsADirectoryError traceback, exit 1."""
    result = cli("data", "check", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{tmp_path}: error is a directory; expected a JSONL file" in result.stdout
    refused(cli("data", "preview", tmp_path), f"{tmp_path}: is a directory")


def test_a_directory_as_data_train(cli: CLI, tmp_path: Path) -> None:
    refused(
        cli("validate", QUICKSTART, f"data.train={tmp_path}"),
        f"command line: data.train: is a directory, expected a file: {tmp_path}",
    )


def test_huge_values_in_rows_are_echoed_bounded(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    row = {"k" * 1_000_000: 1, "messages": [{"role": "r" * 1_000_000, "content": "x"}]}
    path.write_text(json.dumps(row) + "\n")
    _, problems = parse_rows(path)
    assert problems and all(len(p.message) < 300 for p in problems), problems


# --- RECIPE_HOME ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("runs",),
        ("run", str(QUICKSTART)),
        ("status", "quickstart-x"),
        ("logs", "quickstart-x"),
        ("cancel", "quickstart-x"),
        ("plan", str(QUICKSTART)),
    ],
)
@pytest.mark.parametrize("under", [False, True])
def test_recipe_home_pointing_at_a_file(
    cli: CLI, tmp_path: Path, command: tuple[str, ...], under: bool
) -> None:
    """`under`: RECIPE_HOME=file/sub. Before: NotADirectoryError traceback, exit 1."""
    file = tmp_path / "not-a-dir"
    file.write_text("")
    cli.env["RECIPE_HOME"] = str(file / "sub" if under else file)
    refused(cli(*command), "RECIPE_HOME: ", f"{file}", "is not a directory")
    assert file.read_text() == ""


# --- overrides -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # a field absent from the file
        (
            "training.warmup_steps=x",
            "command line: training.warmup_steps: Input should be a valid integer",
        ),
        # a nested section absent from the file. Before: quickstart.yaml:29:1 (compute:)
        (
            "compute.aws.hyperpod.cluster=x",
            "command line: compute.aws.hyperpod.eks_cluster_arn: required field is missing",
        ),
        # a bad value type
        ("training.epochs=x", "command line: training.epochs: Input should be a valid number"),
        # a scalar made a section. Before: quickstart.yaml:16:3: training.epochs
        ("training.epochs.x=1", "command line: training.epochs: Input should be a valid number"),
        # a rule the file alone passes. Before: quickstart.yaml:18:3: training.batch_size
        ("training.micro_batch_size=3", "command line: training.batch_size: must be a multiple"),
        ("method.kind=full", "command line: method.alpha: unknown field"),
        # YAML the file would refuse. Before: ValueError / RecursionError tracebacks.
        ("training.epochs=!!int abc", "command line: training.epochs: 'abc' is not a valid !!int"),
        ("training.epochs=!!python/name:os.system", "the YAML tag !!python/name:os.system"),
        ("training.epochs=" + "[" * 3000, "command line: training.epochs: nested more than 64"),
        ("training.epochs=" + "9" * 5000, "has more digits than a number may have"),
    ],
)
def test_override_errors_are_attributed_to_the_command_line(
    cli: CLI, override: str, expected: str
) -> None:
    result = cli("validate", QUICKSTART, override)
    err = refused(result, expected, lines=None)
    assert all(line.startswith("command line: ") for line in err.strip().splitlines()), err
    assert f"(from '{override[:60]}" in err


def test_an_unusable_home_directory_in_a_path(cli: CLI, tmp_path: Path) -> None:
    """Before: RuntimeError: Could not determine home directory (a relative recipe path)."""
    quickstart(tmp_path, "name: quickstart", "name: quickstart")
    refused(
        cli("validate", "recipe.yaml", "data.train=~nobody-here/x.jsonl"),
        "command line: data.train: not a usable path (Could not determine home directory.)",
    )
    path = quickstart(tmp_path, "base: builtin:tiny-chat", "base: ~nobody-here/model")
    refused(cli("plan", path.name), f"{path.name}:7:3: model.base: not a usable path")


@pytest.mark.parametrize("override", [".a=1", "training.=1", "a..b=1", "=1"])
def test_malformed_override_keys(cli: CLI, override: str) -> None:
    refused(cli("validate", QUICKSTART, override), "command line: expected key=value")


def test_an_alias_bomb_in_an_override() -> None:
    bomb = "[&a [1,1,1,1,1,1,1,1,1,1]"
    for prev, name in zip("abcdef", "bcdefg", strict=True):
        bomb += f", &{name} [" + ",".join([f"*{prev}"] * 10) + "]"
    started = time.perf_counter()
    with pytest.raises(RecipeInputError) as info:
        load_recipe(QUICKSTART, [f"description={bomb}]"])
    assert time.perf_counter() - started < 1.0
    assert info.value.problems[0].file == "command line"


# --- huge values ---------------------------------------------------------------------------


def test_a_huge_value_in_the_file_is_echoed_bounded(cli: CLI, tmp_path: Path) -> None:
    path = quickstart(tmp_path, "format: chat", "format: " + "x" * 1_000_000)
    err = refused(cli("validate", path), "data.format: got 'xxxx", "…' (1,000,000 characters)")
    assert len(err) < 400, len(err)


def test_a_huge_key_in_the_file_is_echoed_bounded(tmp_path: Path) -> None:
    path = quickstart(tmp_path, "epochs: 2", "k" * 1_000_000 + ": 2")
    with pytest.raises(RecipeInputError) as info:
        load_recipe(path)
    assert len(info.value.render()) < 400


def test_a_huge_override_is_echoed_bounded(cli: CLI) -> None:
    # Linux passes at most 128 KiB in one argument; the loader is checked with 1 MB below.
    err = refused(cli("validate", QUICKSTART, "data.format=" + "x" * 100_000), "…")
    assert len(err) < 400, len(err)
    with pytest.raises(RecipeInputError) as info:
        load_recipe(QUICKSTART, ["compute.accelerator=" + "A" * 1_000_000])
    assert len(info.value.render()) < 400


def test_short_repr_is_bounded() -> None:
    assert len(short_repr("x" * 1_000_000)) < 150
    assert len(short_repr(list(range(100_000)))) < 150
    assert short_repr("abc") == "'abc'"


# --- flags ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("data", "preview", "FILE", "--count", "-1"),
        ("data", "preview", "FILE", "--count", "0"),
        ("data", "preview", "FILE", "-n", "100001"),
        ("runs", "--limit", "0"),
        ("runs", "--limit", "-1"),
        # Before: OverflowError: Python int too large to convert to SQLite INTEGER, exit 1.
        ("runs", "--limit", "99999999999999999999"),
        ("plan", "RECIPE", "--attempt", "0"),
        # Before: planned a job name longer than SageMaker's 63 characters.
        ("plan", "RECIPE", "--attempt", "100000"),
        ("plan", "RECIPE", "--attempt", "9" * 5000),
        ("plan", "RECIPE", "--format", "xml"),
    ],
)
def test_int_flags_out_of_range(cli: CLI, args: tuple[str, ...]) -> None:
    data = QUICKSTART.parent / "data" / "support" / "golden.jsonl"
    args = tuple({"FILE": str(data), "RECIPE": str(QUICKSTART)}.get(a, a) for a in args)
    result = cli(*args)
    assert result.returncode == 2, result.stderr[-1000:]
    assert "Traceback" not in result.stderr
    assert "Invalid value for '--" in result.stderr
