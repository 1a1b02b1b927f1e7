"""Property-based tests (Hypothesis): whatever a user feeds the recipe loader, the
overrides and the data-row checker, the answer is a result or a located
RecipeInputError (exit 0 or 2), within bounded time and memory; never another
exception (issue 10). In-process, so hundreds of examples run in seconds; the
"ci" profile in conftest.py makes the examples the same on every run.
"""

from __future__ import annotations

import gc
import json
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from recipes.app import datacheck
from recipes.cli import app
from recipes.errors import RecipeInputError
from recipes.loader import load_recipe
from recipes.schema import Recipe
from tests.conftest import QUICKSTART

# Each test: bounded examples, and a deadline per example so a slow path fails loudly.
FAST = settings(
    max_examples=300,
    deadline=2000,  # ms per example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LONGEST_LINE = 2500  # characters in one rendered problem (Problem.render bounds it)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="recipe-props-") as directory:
        yield Path(directory)


def located(error: RecipeInputError, file: str) -> None:
    """Every problem names where it comes from, in one bounded line."""
    assert error.problems
    for problem in error.problems:
        assert problem.file in (file, "command line"), problem
        rendered = problem.render()
        assert len(rendered) <= LONGEST_LINE, len(rendered)


def load_or_refuse(path: Path, overrides: list[str] | None = None) -> RecipeInputError | None:
    try:
        load_recipe(path, overrides)
    except RecipeInputError as exc:
        return exc
    return None


# --- vocabulary: the schema's own field names, and YAML that has bitten before ------------


def _schema_names() -> list[str]:
    schema = Recipe.model_json_schema()
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            names.update(node.get("properties", {}))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return sorted(names)


FIELDS = _schema_names()
QUICK = yaml.safe_load(QUICKSTART.read_text())
QUICK_TEXT = QUICKSTART.read_text()


def _paths(data: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix] if prefix else []
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, str(key)))
    return out


SECTIONS = ["model", "data", "method", "training", "eval", "compute", "tags", "budget", "deploy"]
DOTTED = sorted(
    {".".join(p) for p in _paths(QUICK)}
    | {f"{section}.{field}" for section in SECTIONS for field in FIELDS[:40]}
    | {"compute.aws.hyperpod.cluster", "compute.local.processes", "eval.gates.valid_loss_max"}
)
TRICKY_SCALARS = [
    ".inf",
    "-.inf",
    ".nan",
    "!!int abc",
    "!!float x",
    "!!binary aGk=",
    "!!python/name:os.system",
    "!foo 1",
    "*a",
    "&a 1",
    "~",
    "null",
    "yes",
    "0x1F",
    "0o17",
    "1_000",
    "2024-13-45",
    "2024-01-01",
    "24h",
    "1.5d",
    "-1",
    "0",
    "1e400",
    "9" * 5000,
    '"\\ud800"',
    "'",
    '"',
    "[",
    "{",
    "]",
    "}",
    "- a",
    "a: b",
    ": ",
    "? a",
    "|",
    ">",
    "%YAML 1.1",
    "---",
    "...",
    "\t",
    "\x00",
    "\x85",
    "A100",
    "A100-80GB",
    "cpu",
    "lora",
    "qlora",
    "full",
    "builtin:tiny-chat",
    "~/x",
    "~nobody-here/x",
    "/",
    "x" * 300,
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(TRICKY_SCALARS),
)
keys = st.one_of(st.sampled_from(FIELDS), st.text(max_size=12))
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=25,
)


# --- (1) arbitrary bytes as a recipe file ------------------------------------------------


@FAST
@given(
    st.one_of(
        st.binary(max_size=2000),
        # A real recipe with bytes spliced in: reaches the schema, not only the parser.
        st.tuples(st.integers(0, len(QUICK_TEXT)), st.binary(max_size=40), st.integers(0, 40)).map(
            lambda t: QUICK_TEXT.encode()[: t[0]] + t[1] + QUICK_TEXT.encode()[t[0] + t[2] :]
        ),
    )
)
def test_arbitrary_bytes_as_a_recipe(scratch: Path, raw: bytes) -> None:
    path = scratch / "bytes.yaml"
    path.write_bytes(raw)
    error = load_or_refuse(path)
    if error is not None:
        located(error, str(path))


# --- (2) arbitrary YAML-ish documents ----------------------------------------------------


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def _set(data: dict, path: tuple[str, ...], value: Any) -> dict:
    node = data
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value
    return data


yaml_texts = st.one_of(
    # Arbitrary structure over the schema's vocabulary, written as YAML.
    documents.map(_dump),
    # The quickstart with a few fields replaced by arbitrary values.
    st.lists(st.tuples(st.sampled_from(DOTTED), documents), min_size=1, max_size=4).map(
        lambda edits: _dump(
            _edit(json.loads(json.dumps(QUICK)), edits)  # a deep copy
        )
    ),
    # YAML-ish text: tokens that have broken parsers, in any order.
    st.lists(
        st.one_of(
            st.sampled_from(TRICKY_SCALARS),
            st.sampled_from(FIELDS).map(lambda f: f + ":"),
            st.sampled_from(["\n", "\n  ", " ", ", ", "&a ", "*a", "<<: ", "!!str "]),
        ),
        max_size=40,
    ).map("".join),
)


def _edit(data: dict, edits: list[tuple[str, Any]]) -> dict:
    for dotted, value in edits:
        _set(data, tuple(dotted.split(".")), value)
    return data


@FAST
@given(yaml_texts)
def test_arbitrary_yaml_documents(scratch: Path, text: str) -> None:
    path = scratch / "doc.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    error = load_or_refuse(path)
    if error is not None:
        located(error, str(path))


# --- (3) arbitrary overrides on the quickstart -------------------------------------------

override_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(TRICKY_SCALARS),
    documents.map(lambda d: json.dumps(d, allow_nan=True)),  # JSON is YAML flow style
)
override_keys = st.one_of(
    st.sampled_from(DOTTED),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz_.-0123456789", max_size=20),
)


@FAST
@given(st.lists(st.tuples(override_keys, override_values), min_size=1, max_size=3))
def test_arbitrary_overrides_blame_the_command_line(pairs: list[tuple[str, str]]) -> None:
    overrides = [f"{key}={value}" for key, value in pairs]
    error = load_or_refuse(QUICKSTART, overrides)
    if error is not None:
        # The file alone is valid: whatever is wrong came from the command line.
        located(error, "command line")
        assert all(p.file == "command line" for p in error.problems), error.render()


@settings(FAST, max_examples=150)
@given(st.text(max_size=200))
def test_arbitrary_override_text(text: str) -> None:
    """Any argument at all, '=' or not, where an override goes."""
    error = load_or_refuse(QUICKSTART, [text])
    if error is not None:
        assert all(p.file == "command line" for p in error.problems), error.render()


# --- (4) arbitrary data files for `recipe data check` ------------------------------------

json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=30),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
roles = st.sampled_from(["system", "user", "assistant", "tool", "robot", "", None])
messages = st.lists(
    st.fixed_dictionaries(
        {"role": roles, "content": st.one_of(st.text(max_size=60), json_values)},
        optional={
            "weight": st.one_of(st.sampled_from([0, 1, 2, True]), json_values),
            "tool_calls": json_values,
            "name": st.text(max_size=10),
        },
    ),
    max_size=5,
)
chat_rows = st.fixed_dictionaries(
    {"messages": messages},
    optional={"tools": json_values, "label": json_values, "meta": json_values, "x": json_values},
)
json_lines = st.one_of(
    chat_rows.map(json.dumps),
    json_values.map(json.dumps),
    st.sampled_from(
        [
            "[" * 5000 + "]" * 5000,
            '{"id": ' + "9" * 5000 + "}",
            '{"messages": [{"role": "user", "content": "\\ud800"}]}',
            '{"messages": [{"role": "user", "content": "\\udfff x"},'
            ' {"role": "assistant", "content": "a"}]}',
            "NaN",
            "\ufeff{}",
        ]
    ),
    st.text(max_size=80),
)
data_files = st.one_of(
    st.lists(json_lines, max_size=6).map(
        lambda lines: "\n".join(lines).encode("utf-8", "surrogatepass")
    ),
    st.binary(max_size=1000),
    st.lists(json_lines, max_size=3).map(
        lambda lines: "\n".join(lines).encode("utf-16", "surrogatepass")
    ),
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    return datacheck.load_tokenizer("builtin:tiny-chat")  # None without the train extra


@settings(FAST, max_examples=200)
@given(data_files, st.sampled_from(["chat", "prompt_completion", "alpaca"]))
def test_arbitrary_data_files(scratch: Path, tokenizer: Any, raw: bytes, fmt: str) -> None:
    path = scratch / "data.jsonl"
    path.write_bytes(raw)
    report = datacheck.check(path, datacheck.Settings(format=fmt, max_seq_len=64), tokenizer)
    for finding in report.findings:
        assert finding.severity in ("error", "warning")
        assert len(finding.message) <= LONGEST_LINE
    json.dumps(report.to_dict())  # what --format json prints


# --- the same, through the CLI in-process ------------------------------------------------

runner = CliRunner()


@settings(FAST, max_examples=60)
@given(
    st.one_of(
        yaml_texts.map(lambda text: text.encode("utf-8", "surrogatepass")), st.binary(max_size=500)
    )
)
def test_validate_exits_0_or_2(scratch: Path, raw: bytes) -> None:
    path = scratch / "cli.yaml"
    path.write_bytes(raw)
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception


@settings(FAST, max_examples=40)
@given(data_files)
def test_data_check_exits_0_or_2(scratch: Path, raw: bytes) -> None:
    path = scratch / "cli.jsonl"
    path.write_bytes(raw)
    result = runner.invoke(app, ["data", "check", str(path), "--format", "json"])
    assert result.exit_code in (0, 2), (result.exit_code, result.exception)


# --- (5) alias bombs: refused in well under a second, with bounded memory -----------------


@settings(FAST, max_examples=20, deadline=None)  # the time bound is asserted below
@given(st.integers(2, 12), st.integers(4, 12), st.booleans())
def test_alias_bombs_are_refused_quickly(scratch: Path, width: int, depth: int, flow: bool) -> None:
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, depth + 1):
        refs = ", ".join([f"*l{level - 1}"] * width)
        lines.append(f"l{level}: &l{level} [{refs}]" if flow else f"l{level}: &l{level}")
        if not flow:
            lines += [f"  - *l{level - 1}"] * width
    path = scratch / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    tracemalloc.start()
    # CPU time of this process, with the collector paused: what the bomb costs, whatever
    # else the machine runs and however big the test session's heap has grown (a full
    # collection of that heap, landing inside the window, once took it past 1 s).
    gc.collect()
    gc.disable()
    started = time.process_time()
    try:
        error = load_or_refuse(path)
        elapsed = time.process_time() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        gc.enable()
        tracemalloc.stop()
    if width**depth > 20_000:
        assert error is not None and "aliases" in error.render()
    assert elapsed < 1.0, elapsed
    assert peak < 64 * 1024 * 1024, peak


# --- (6) endpoint, serve and release arguments: 0 (help) or 2, never a traceback -----------

COMMANDS = [
    ["endpoint", "plan"],
    ["endpoint", "deploy"],
    ["endpoint", "status"],
    ["endpoint", "invoke"],
    ["endpoint", "delete"],
    ["release"],
    ["serve"],
]
words = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "--provider",
            "aws",
            "bogus",
            "--format",
            "json",
            "--adapter",
            "a=b",
            "=",
            "--port",
            "0",
            "-1",
            "99999",
            "--host",
            "0.0.0.0",
            "--endpoint",
            "--max-tokens",
            "x=1",
            "model.base=x",
            "deploy.min_replicas=-1",
            "--dry-run",
            "--abort",
            "..",
            ".",
        ]
    ),
)


@settings(FAST, max_examples=150)
@given(st.sampled_from(COMMANDS), st.lists(words, max_size=5))
def test_endpoint_and_release_arguments(
    scratch: Path, monkeypatch_module: Any, command: list[str], args: list[str]
) -> None:
    if command == ["serve"] and any(a.startswith("builtin:") for a in args):
        return  # a real model would start serving
    result = runner.invoke(app, [*command, *args])
    assert result.exit_code in (0, 2), (command, args, result.exit_code, result.output)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception


@pytest.fixture(scope="module")
def monkeypatch_module(scratch: Path) -> Iterator[Any]:
    """An empty RECIPE_HOME: no run id or endpoint resolves, nothing is created elsewhere."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECIPE_HOME", str(scratch / "empty-home"))
        patch.delenv("RECIPE_SERVE_API_KEY", raising=False)
        yield patch
