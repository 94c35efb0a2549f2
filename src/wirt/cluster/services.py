"""Connecting to a wirt cluster and reaching its actors.

Names (Ray namespace "wirt"): the controller is `wirt-controller` (one, on the head node),
each node's agent `wirt-agent-NODE`. Both are detached actors: they outlive the command that
started them and end with their node. Ray's errors become one-line WirtErrors here: an error
raised by wirt code on a node keeps its message, a dead actor reads "node X is down".
"""

from __future__ import annotations

import ipaddress
import logging
import os
from typing import Any

from wirt.cluster import require_ray
from wirt.cluster.resources import NODE_PREFIX, PIN
from wirt.errors import WirtError

__all__ = ["NAMESPACE", "CONTROLLER", "agent_name", "connect", "call", "agent", "controller",
           "start_agent", "start_controller", "cluster_address", "LOOPBACK", "loopback_only", "is_loopback"]

NAMESPACE = "wirt"
CONTROLLER = "wirt-controller"
ACTOR_START_TIMEOUT = 300.0  # a new worker imports wirt and Ray; minutes on a loaded 2-core host


LOOPBACK = "127.0.0.1"
# Ray's switch for its single-host mode (the default on Windows and macOS): its own processes and
# children then take 127.0.0.1, not the interface address, as this node's IP (services.py
# get_node_ip_address); it also refuses `ray start --address` (joining), so only heads use it.
_RAY_SINGLE_HOST = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def is_loopback(address: str) -> bool:
    """Whether HOST:PORT (or HOST) names this host's loopback."""
    if address.startswith("["):
        host = address[1:address.find("]")]
    else:
        host = address.rsplit(":", 1)[0] if address.count(":") == 1 else address
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_only() -> None:
    """Make Ray in this process and the Ray processes it starts use only 127.0.0.1: without
    this, Ray replaces a loopback address it is given (node IP, or the head's address in
    ray.init) by the interface address, so a head on 127.0.0.1 is dialled at 192.0.2.x and
    never answers -- the "hang" with node_ip_address=127.0.0.1."""
    os.environ[_RAY_SINGLE_HOST] = "0"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # no usage report (to a host on the internet)
    import ray._private.ray_constants as rc  # read at import: set it too if Ray is loaded already

    rc.ENABLE_RAY_CLUSTER = False


def agent_name(node: str) -> str:
    return f"wirt-agent-{node}"


def cluster_address(given: str | None) -> str | None:
    """--cluster ADDR, else $WIRT_CLUSTER, else None (single host)."""
    return given or os.environ.get("WIRT_CLUSTER") or None


def connect(address: str) -> Any:
    """Join the Ray cluster at `address` (HOST:PORT of its head) as a client; returns ray."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    if is_loopback(address):
        loopback_only()
    _check_reachable(address)
    try:
        ray.init(address=address, namespace=NAMESPACE, logging_level=logging.ERROR, log_to_driver=False,
                 configure_logging=True)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WirtError(f"cannot reach the wirt cluster at {address}: {first}; start it with "
                        "`wirt cluster up` or check --cluster / WIRT_CLUSTER") from None
    _events_to_stderr()
    return ray


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail at once, in one line, where nothing answers at HOST:PORT: Ray's own connect retries
    a dead address for minutes. Addresses that are not HOST:PORT are left to Ray."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise WirtError(f"cannot reach the wirt cluster at {address}: {reason}; start it with "
                        "`wirt cluster up` or check --cluster / WIRT_CLUSTER") from None


def _events_to_stderr() -> None:
    """Ray's driver prints cluster events ("node ... has been marked dead") on stdout, where they
    would break `wirt ls --json`; send them to stderr (ray._private.worker.print_to_stdstream,
    the one function its event thread prints through)."""
    import ray._private.worker as rw

    original = getattr(rw, "print_to_stdstream", None)
    if original is None or getattr(original, "_wirt", False):
        return

    def to_stderr(data: dict, ignore_prefix: bool = False) -> None:
        original(dict(data, is_err=True), ignore_prefix=ignore_prefix)

    to_stderr._wirt = True  # type: ignore[attr-defined]
    rw.print_to_stdstream = to_stderr


def call(ref: Any, what: str = "", timeout: float | None = None) -> Any:
    """ray.get(ref) with Ray's errors as one-line WirtErrors."""
    ray = require_ray()
    from ray import exceptions as rx

    try:
        return ray.get(ref, timeout=timeout)
    except rx.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, WirtError):
            err = WirtError(str(cause))
            err.exit_code = cause.exit_code
            raise err from None
        if isinstance(cause, BaseException):
            raise cause
        raise
    except (rx.ActorDiedError, rx.ActorUnavailableError) as exc:
        raise WirtError(f"{what or 'a wirt actor'} is gone: its node is down or was stopped "
                        f"({type(exc).__name__})") from None
    except rx.GetTimeoutError:
        raise WirtError(f"{what or 'the cluster'} did not answer within {timeout:g} s") from None


def _actor(name: str, what: str) -> Any:
    ray = require_ray()
    try:
        return ray.get_actor(name, namespace=NAMESPACE)
    except ValueError:
        raise WirtError(f"{what} is not running; start it with `wirt cluster up`") from None


def agent(node: str) -> Any:
    """The agent actor of `node`."""
    return _actor(agent_name(node), f"the wirt agent of node {node!r}")


def controller() -> Any:
    """The cluster's controller actor."""
    return _actor(CONTROLLER, "the wirt controller")


def start_agent(node: str) -> dict[str, Any]:
    """Start (or find) the agent of `node`, pinned there by its wirt_node_NODE resource; returns
    its info. Its worker process inherits the node's environment, so WIRT_HOME is the node's."""
    ray = require_ray()
    from wirt.cluster.agent import HostAgent

    handle = ray.remote(HostAgent).options(
        name=agent_name(node), namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0,
        resources={NODE_PREFIX + node: PIN}, max_concurrency=16).remote(node)
    return call(handle.info.remote(), f"the agent of node {node!r}", timeout=ACTOR_START_TIMEOUT)


def start_controller(node: str) -> dict[str, Any]:
    """Start (or find) the controller on `node` (the head); returns its summary."""
    ray = require_ray()
    from wirt.cluster.controller import Controller

    handle = ray.remote(Controller).options(
        name=CONTROLLER, namespace=NAMESPACE, lifetime="detached", get_if_exists=True, num_cpus=0,
        resources={NODE_PREFIX + node: PIN}, max_concurrency=32).remote()
    return call(handle.hello.remote(), "the wirt controller", timeout=ACTOR_START_TIMEOUT)
