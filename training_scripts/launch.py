"""Start training inside a cloud job: install what the image lacks, tokenize once,
then run one training process per device on every node.

    python -m training_scripts.launch --config recipe.json [--output-dir DIR]
        [--nnodes N] [--no-install] [--launcher torchrun|hyperpodrun]

The topology (nodes, this node's rank, the first node's address and port, devices
per node) comes from the platform: SageMaker's resourceconfig.json, Vertex AI's
CLUSTER_SPEC, Azure ML's PyTorch distribution variables, or the usual
MASTER_ADDR / MASTER_PORT / NNODES / NODE_RANK variables. SageMaker's SM_*
variables are set here from its config files, because a custom entrypoint
bypasses the toolkit that normally sets them.

Azure ML runs it once per node (a command job with `distribution: {type: pytorch,
process_count_per_instance: 1}` and `instance_count: N`):

    python -m training_scripts.launch --config ${{inputs.recipe}} \\
        --output-dir ${{outputs.output}} --nnodes N

The launcher stays in front of its children as the container's first process:
SIGTERM and SIGINT (a platform's stop, a spot interruption, a Kubernetes
termination) are passed on to the running child's process group, the launcher
waits for it and exits with its code: 143 (128 + SIGTERM) when the trainer
stopped on SIGTERM after writing a checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from training_scripts import contract, platforms, secrets
from training_scripts.modeling import SetupError

SM_CONFIG = Path("/opt/ml/input/config")
DEFAULT_MASTER_PORT = 29500
SHUTDOWN_TIMEOUT_S = 90  # hyperpodrun: SIGTERM to SIGKILL, time for a step and a checkpoint
VERTEX_CACHE_DIR = "/tmp/recipe-cache"
REQUIREMENTS = Path(__file__).with_name("requirements.txt")


@dataclass(frozen=True)
class Topology:
    nnodes: int
    node_rank: int
    master_addr: str
    nproc_per_node: int
    master_port: int = DEFAULT_MASTER_PORT


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
    if platforms.detect(env) != "vertex" or env.get("RECIPE_CACHE_DIR"):
        return {}
    return {"RECIPE_CACHE_DIR": VERTEX_CACHE_DIR}


def master_port(env: Mapping[str, str]) -> int:
    """The rendezvous port: the platform's MASTER_PORT where it sets one (Azure ML picks a
    free port on the first node), else torchrun's usual 29500."""
    return int(env.get("MASTER_PORT") or DEFAULT_MASTER_PORT)


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


def azureml_topology(env: Mapping[str, str], devices: int) -> Topology:
    """Azure ML with a PyTorch distribution and one process per instance.

    Azure ML's distributed GPU training guide (PyTorch, per-node launch with torchrun:
    https://learn.microsoft.com/azure/machine-learning/how-to-train-distributed-gpu)
    says it sets MASTER_ADDR (the first node), MASTER_PORT, NODE_RANK (this node),
    WORLD_SIZE and RANK for each process it starts; with process_count_per_instance 1
    that is one process per node, so WORLD_SIZE is the number of nodes and RANK equals
    NODE_RANK, and the script starts torchrun itself.
    """
    return Topology(
        nnodes=int(env.get("WORLD_SIZE") or 1),
        node_rank=int(env.get("NODE_RANK") or env.get("RANK") or 0),
        master_addr=env.get("MASTER_ADDR", "127.0.0.1"),
        nproc_per_node=devices,
    )


def topology(
    env: Mapping[str, str],
    devices: int,
    config_dir: Path = SM_CONFIG,
    nnodes: int | None = None,
) -> Topology:
    """This node's place in the job; `nnodes` (the --nnodes argument) wins over the platform."""
    topo = _platform_topology(env, devices, config_dir)
    topo = dataclasses.replace(topo, master_port=master_port(env))
    if nnodes:
        topo = dataclasses.replace(topo, nnodes=nnodes)
    return topo


def _platform_topology(env: Mapping[str, str], devices: int, config_dir: Path) -> Topology:
    if env.get("CLUSTER_SPEC"):
        return vertex_topology(env["CLUSTER_SPEC"], devices)
    if platforms.detect(env) == "azureml":
        return azureml_topology(env, devices)
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


def install_command(env: Mapping[str, str], requirements: Path = REQUIREMENTS) -> list[str]:
    """One pip call: the training requirements plus what the configured secret store needs
    (RECIPE_WANDB_SECRET=azure-keyvault:... needs azure-identity, and so on)."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "-r",
        str(requirements),
        *secrets.required_packages(env),
    ]


def commands(
    config: str, output_dir: str | None, topo: Topology, launcher_name: str = "torchrun"
) -> list[list[str]]:
    job_args = ["--config", config] + (["--output-dir", output_dir] if output_dir else [])
    python = sys.executable
    preprocess = [python, "-m", "training_scripts.preprocess", *job_args]
    train = ["-m", "training_scripts.train", *job_args]
    if launcher_name == "hyperpodrun":
        # HyperPod's elastic agent does the rendezvous; it takes torchrun's arguments.
        # Its --shutdown-signal defaults to SIGKILL (hyperpod-elastic-agent README): ask for
        # SIGTERM, so a stopped job's trainers checkpoint before SIGKILL comes.
        agent = [
            "hyperpodrun",
            f"--nnodes={topo.nnodes}",
            f"--nproc-per-node={topo.nproc_per_node}",
            "--shutdown-signal",
            "SIGTERM",
            "--shutdown-timeout",
            str(SHUTDOWN_TIMEOUT_S),
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
        f"--master-port={topo.master_port}",
    ]
    return [preprocess, [*launcher, *train]]


def exit_status(returncode: int) -> int:
    """A child's return code as a shell reports it: killed by signal N -> 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


class Forwarder:
    """Runs commands one after another, each in a process group of its own, and passes
    SIGTERM and SIGINT on to that group.

    Started as a container's first process (PID 1), the launcher is what a platform
    signals; without this the trainer would never hear of the stop and be SIGKILLed
    after the grace period. Children get their own group so that each signal reaches
    them exactly once, also when a terminal signals the launcher's group. torchrun
    passes the signal on to its workers and waits for them.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.child: subprocess.Popen[bytes] | None = None
        self.received: int | None = None

    def install(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, self._on_signal)

    def run(self, argvs: Sequence[Sequence[str]], env: Mapping[str, str]) -> int:
        """Each command in turn, stopping at the first failure or after a signal.

        After a signal the result says so: the child's own code when it is one of a stop
        (the trainer's 143), else 128 + the signal (torchrun exits 1 on SIGTERM)."""
        for argv in argvs:
            if self.received is not None:
                return 128 + self.received
            code = self._run_one(argv, env)
            if self.received is not None:
                return code if code >= 128 else 128 + self.received
            if code != 0:
                return code
        return 0

    def _run_one(self, argv: Sequence[str], env: Mapping[str, str]) -> int:
        self.child = subprocess.Popen(list(argv), env=dict(env), start_new_session=True)
        if self.received is not None:  # arrived while the child was being started
            self._send(self.received)
        try:
            return exit_status(self.child.wait())
        finally:
            self.child = None

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.received = signum
        self._send(signum)

    def _send(self, signum: int) -> None:
        child = self.child
        if child is not None and child.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signum)  # the child leads its own group


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
    forwarder = Forwarder()
    forwarder.install()  # first: a stop during the installs ends the job without a trainer
    env = dict(os.environ)
    if (SM_CONFIG / "inputdataconfig.json").exists():
        env.update(sagemaker_env())
    env.update(vertex_env(env))
    try:
        contract.load_config(args.config)
    except SetupError as exc:
        contract.write_failure(platforms.resolve(args.output_dir, env).output_dir, str(exc))
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return contract.EXIT_SETUP
    if not args.no_install:
        code = forwarder.run([install_command(env)], env)
        if code:
            return code
    env.update(secrets.resolve(env))
    import torch

    topo = topology(env, torch.cuda.device_count(), nnodes=args.nnodes)
    print(f"launch: {topo}", flush=True)
    return forwarder.run(commands(args.config, args.output_dir, topo, args.launcher), env)


if __name__ == "__main__":
    sys.exit(main())
