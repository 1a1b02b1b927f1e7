"""Start training inside a cloud job: install what the image lacks, tokenize once,
then run one training process per device on every node.

    python -m training_scripts.launch --config recipe.json [--output-dir DIR]

The topology (nodes, this node's rank, the first node's address, devices per
node) comes from the platform: SageMaker's resourceconfig.json, Vertex AI's
CLUSTER_SPEC, or the usual MASTER_ADDR / NNODES / NODE_RANK variables.
SageMaker's SM_* variables are set here from its config files, because a
custom entrypoint bypasses the toolkit that normally sets them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SM_CONFIG = Path("/opt/ml/input/config")
MASTER_PORT = "29500"
VERTEX_CACHE_DIR = "/tmp/recipe-cache"


@dataclass(frozen=True)
class Topology:
    nnodes: int
    node_rank: int
    master_addr: str
    nproc_per_node: int


def sagemaker_env(config_dir: Path = SM_CONFIG) -> dict[str, str]:
    """The SM_* variables the training code reads, from SageMaker's own config files."""
    env = {"SM_MODEL_DIR": "/opt/ml/model", "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data"}
    channels = json.loads((config_dir / "inputdataconfig.json").read_text())
    for name in channels:
        env[f"SM_CHANNEL_{name.upper()}"] = f"/opt/ml/input/data/{name}"
    return env


def vertex_env(env: Mapping[str, str]) -> dict[str, str]:
    """Vertex AI writes outputs to Cloud Storage FUSE, shared by every node: each node
    tokenizes onto its own disk instead of racing the others there."""
    from training_scripts import platforms

    if platforms.detect(env) != "vertex" or env.get("RECIPE_CACHE_DIR"):
        return {}
    return {"RECIPE_CACHE_DIR": VERTEX_CACHE_DIR}


def vertex_topology(cluster_spec: str, devices: int) -> Topology:
    """Vertex AI's CLUSTER_SPEC: workerpool0 is the chief (rank 0), workerpool1 the workers."""
    spec = json.loads(cluster_spec)
    chief = spec["cluster"]["workerpool0"]
    workers = spec["cluster"].get("workerpool1", [])
    task = spec["task"]
    if task["type"] == "workerpool0":
        rank = int(task.get("index", 0))
    elif task["type"] == "workerpool1":
        rank = len(chief) + int(task.get("index", 0))
    else:
        raise SystemExit(f"error: CLUSTER_SPEC: unexpected worker pool {task['type']}")
    return Topology(
        nnodes=len(chief) + len(workers),
        node_rank=rank,
        master_addr=chief[0].rsplit(":", 1)[0],  # entries are host:port
        nproc_per_node=devices,
    )


def topology(env: Mapping[str, str], devices: int, config_dir: Path = SM_CONFIG) -> Topology:
    if env.get("CLUSTER_SPEC"):
        return vertex_topology(env["CLUSTER_SPEC"], devices)
    resource = config_dir / "resourceconfig.json"
    if resource.exists():
        hosts = json.loads(resource.read_text())
        ordered = sorted(hosts["hosts"])
        return Topology(
            nnodes=len(ordered),
            node_rank=ordered.index(hosts["current_host"]),
            master_addr=ordered[0],
            nproc_per_node=devices,
        )
    return Topology(
        nnodes=int(env.get("NNODES", env.get("WORLD_SIZE_NODES", "1"))),
        node_rank=int(env.get("NODE_RANK", "0")),
        master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
        nproc_per_node=devices,
    )


def commands(
    config: str, output_dir: str | None, topo: Topology, launcher_name: str = "torchrun"
) -> list[list[str]]:
    job_args = ["--config", config] + (["--output-dir", output_dir] if output_dir else [])
    python = sys.executable
    preprocess = [python, "-m", "training_scripts.preprocess", *job_args]
    train = ["-m", "training_scripts.train", *job_args]
    if launcher_name == "hyperpodrun":
        # HyperPod's elastic agent does the rendezvous; it takes torchrun's arguments.
        agent = [
            "hyperpodrun",
            f"--nnodes={topo.nnodes}",
            f"--nproc-per-node={topo.nproc_per_node}",
        ]
        return [preprocess, [*agent, *train]]
    if topo.nnodes == 1 and topo.nproc_per_node <= 1:
        return [[python, *train]]
    launcher = [
        python,
        "-m",
        "torch.distributed.run",
        f"--nnodes={topo.nnodes}",
        f"--node-rank={topo.node_rank}",
        f"--nproc-per-node={topo.nproc_per_node}",
        f"--master-addr={topo.master_addr}",
        f"--master-port={MASTER_PORT}",
    ]
    return [preprocess, [*launcher, *train]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--output-dir", default=None)
    parser.add_argument(
        "--no-install", action="store_true", help="the image already has the requirements"
    )
    parser.add_argument("--launcher", choices=["torchrun", "hyperpodrun"], default="torchrun")
    parser.add_argument("--nnodes", type=int, default=None, help="nodes, when no config says")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if (SM_CONFIG / "inputdataconfig.json").exists():
        env.update(sagemaker_env())
    env.update(vertex_env(env))
    if not args.no_install:
        requirements = Path(__file__).with_name("requirements.txt")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "-r", str(requirements)],
            check=True,
        )
    from training_scripts import secrets

    env.update(secrets.resolve(env))
    import torch

    devices = torch.cuda.device_count()
    topo = topology(env, devices)
    if args.nnodes:
        topo = Topology(args.nnodes, topo.node_rank, topo.master_addr, topo.nproc_per_node)
    print(f"launch: {topo}", flush=True)
    for command in commands(args.config, args.output_dir, topo, args.launcher):
        result = subprocess.run(command, env=env)
        if result.returncode:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
