"""How long `recipe --help` and `recipe validate` take, next to a bare interpreter.

    python benchmarks/cli_startup.py [--repeat 10]

The baseline is `python -c pass` measured in the same run, so the ratio says
what the CLI itself costs on this machine. `import torch` is shown for scale:
it is what the CLI would cost if it imported the training stack eagerly.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "recipes" / "catalog" / "quickstart.yaml"

CASES = {
    "baseline: python -c pass": [sys.executable, "-c", "pass"],
    "recipe --help": [sys.executable, "-m", "recipes", "--help"],
    "recipe validate quickstart": [sys.executable, "-m", "recipes", "validate", str(QUICKSTART)],
    "recipe plan quickstart --format json": [
        sys.executable,
        "-m",
        "recipes",
        "plan",
        str(QUICKSTART),
        "--format",
        "json",
    ],
    "for scale: python -c 'import torch'": [sys.executable, "-c", "import torch"],
}


def measure(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, cwd=REPO, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    results = {name: measure(argv, args.repeat) for name, argv in CASES.items()}
    baseline = results["baseline: python -c pass"]
    print(f"{'command':<40} {'median s':>9} {'x baseline':>11}")
    for name, seconds in results.items():
        print(f"{name:<40} {seconds:>9.3f} {seconds / baseline:>11.1f}")


if __name__ == "__main__":
    main()
