"""`recipe serve` failures before serving, through the real CLI in a subprocess: a port in
use, a host that does not resolve, corrupt weights or adapters. Each is exit 2 with one
line naming the problem (no traceback); the port is checked before torch is imported.
And serve() with port 0 reports the port it really got."""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CLI
from training_scripts.modeling import BUILTIN_DIR

REPO = BUILTIN_DIR.parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def taken() -> Iterator[int]:
    """A port something else listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def one_line_error(result: subprocess.CompletedProcess[str], alone: bool = False) -> str:
    """The error line of an exit 2. `alone`: nothing else was printed (a failure before the
    model loads; loading itself may show transformers' progress bars and warnings)."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("import time:")]
    errors = [line for line in lines if line.startswith("command line:")]
    assert len(errors) == 1, result.stderr
    if alone:
        assert lines == errors, result.stderr
    return errors[0]


def imported(stderr: str, module: str) -> bool:
    """Whether `python -X importtime` listed the module."""
    return re.search(rf"^import time:.*\|\s*{re.escape(module)}$", stderr, re.M) is not None


def test_a_port_in_use_is_exit_2_before_torch_is_imported(taken: int) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "recipes", "serve", "builtin:tiny-chat"]
        + ["--port", str(taken)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    line = one_line_error(result, alone=True)
    assert "--port" in line and f"port {taken} on 127.0.0.1 is in use" in line
    assert imported(result.stderr, "recipes")  # the check itself sees imports
    for heavy in ("torch", "transformers", "uvicorn"):
        assert not imported(result.stderr, heavy), heavy


def test_a_host_that_does_not_resolve_is_exit_2(cli: CLI) -> None:
    cli.env["RECIPE_SERVE_API_KEY"] = "k"  # not loopback needs a key
    result = cli("serve", "builtin:tiny-chat", "--host", "not a host", "--port", free_port())
    line = one_line_error(result, alone=True)
    assert "--host" in line and "cannot resolve host 'not a host'" in line


def _adapter(directory: Path, weights: bytes) -> Path:
    directory.mkdir(parents=True)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": str(BUILTIN_DIR / "tiny-chat"),
        "r": 4,
        "lora_alpha": 8,
        "target_modules": ["q_proj", "v_proj"],
    }
    (directory / "adapter_config.json").write_text(json.dumps(config))
    (directory / "adapter_model.safetensors").write_bytes(weights)
    return directory


def test_a_corrupt_adapter_is_exit_2_in_one_line(cli: CLI, tmp_path: Path) -> None:
    bad = _adapter(tmp_path / "bad-adapter", b"garbage")
    result = cli("serve", bad, "--port", free_port())
    line = one_line_error(result)
    assert f"{bad}: cannot load adapter:" in line and "adapters" in line


def test_a_corrupt_extra_adapter_is_exit_2_in_one_line(cli: CLI, tmp_path: Path) -> None:
    bad = _adapter(tmp_path / "bad-adapter", b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    result = cli("serve", "builtin:tiny-chat", "--adapter", f"x={bad}", "--port", free_port())
    assert f"{bad}: cannot load adapter:" in one_line_error(result)


def test_corrupt_base_weights_are_exit_2_in_one_line(cli: CLI, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(BUILTIN_DIR / "tiny-chat", model)
    (model / "model.safetensors").write_bytes(b"garbage")
    result = cli("serve", model, "--port", free_port())
    assert f"{model}: cannot load the model:" in one_line_error(result)


def test_serve_on_port_0_reports_the_real_port(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from providers.local.server import ServeConfig, serve\n"
        "serve(ServeConfig(source='builtin:tiny-chat', port=0, drain_timeout=5),\n"
        "      on_ready=lambda url: print(url, flush=True))\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        assert not url.endswith(":0")
        assert httpx.get(f"{url}/health", timeout=10).json() == {"status": "ok"}
        models = httpx.get(f"{url}/v1/models", timeout=10).json()
        assert [card["id"] for card in models["data"]] == ["builtin:tiny-chat"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
