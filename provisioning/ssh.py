"""The SSH executor: the only module that talks paramiko.

One connection per node (and key) per worker process. On it, ``call`` speaks the node agent's
protocol (``deploy/node/agent``): one exec channel running ``hostwright-agent`` for the whole
life of the connection (the key's forced command runs whatever is asked), one JSON line per
request with all of a step's actions, one JSON line back. A request on the open channel costs
a few milliseconds; timeouts apply to the connect and to every request, and a channel found
broken is reopened once.

Every value in an action went through ``provisioning.validators`` first (the agent checks
it again); the panel's keys can run nothing but the agent. Host keys are pinned: a node
presenting any key other than the one stored on its ``Node`` row is refused and the
fingerprint it showed is reported.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

from provisioning.errors import (
    HostKeyRefused,
    NodeUnreachable,
    OutcomeUnknown,
    PermanentStepError,
    TransientStepError,
)

CONNECT_TIMEOUT = 10.0
AGENT = "/usr/local/sbin/hostwright-agent"
# Codes of agent errors raised before the action touched anything.
REFUSED_BEFORE_ACTING = frozenset({"invalid", "unknown_action", "forbidden", "bad_request"})


def redact(text: str, secrets_: tuple[str, ...] | list[str]) -> str:
    for s in secrets_:
        if s:
            text = text.replace(s, "***")
    return text


@dataclass(frozen=True)
class AgentAction:
    """One node agent action: its name, its arguments, and which arguments are secret.

    Secret arguments (passwords, keys) are sent to the node but replaced by ``***`` wherever
    the action is recorded.
    """

    name: str
    args: dict[str, Any]
    secret: tuple[str, ...] = ()

    def wire(self) -> dict[str, Any]:
        return {"action": self.name, "args": self.args}

    def secret_values(self) -> list[str]:
        return [str(self.args[k]) for k in self.secret if self.args.get(k)]

    def display(self) -> str:
        shown = {k: ("***" if k in self.secret else v) for k, v in self.args.items()}
        text = json.dumps(shown, sort_keys=True, ensure_ascii=False, default=str)
        if len(text) > 500:
            text = text[:500] + "..."
        return f"{self.name} {text}"


def action(action_name: str, /, *, secret: tuple[str, ...] = (), **args: Any) -> AgentAction:
    """``action("user.ensure", user="hwt1", ...)``: an agent action for ``call``. The action's
    name is positional, so an argument may be called ``name``; ``secret`` names the arguments
    shown as ``***`` in records."""
    return AgentAction(name=action_name, args=args, secret=secret)


@dataclass
class ActionResult:
    """One action's answer. ``error`` is the agent's structured error (code, message,
    permanent, changed, detail) when ``ok`` is false; ``skipped`` when an earlier action of
    the same request failed."""

    action: str
    ok: bool
    changed: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    skipped: bool = False
    ms: int = 0


@dataclass
class AgentResult:
    ok: bool
    results: list[ActionResult]
    ms: int = 0
    error: dict[str, Any] | None = None

    def failure(self) -> tuple[ActionResult | None, dict[str, Any]] | None:
        """The failed action and its error, or None when everything succeeded."""
        if self.error is not None:
            return None, self.error
        for r in self.results:
            if not r.ok and not r.skipped:
                return r, r.error or {}
        return None


def fingerprint(key: paramiko.PKey) -> str:
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_host_key(text: str) -> paramiko.PKey:
    """'ssh-ed25519 AAAA... [comment]' -> a paramiko key."""
    parts = text.strip().split()
    if len(parts) < 2:
        raise HostKeyRefused("the node has no pinned host key: add it with manage.py node_add")
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))
    except Exception as exc:
        raise HostKeyRefused(f"the pinned host key cannot be read: {exc}") from None


def host_key_text(key: paramiko.PKey) -> str:
    return f"{key.get_name()} {key.get_base64()}"


@dataclass(frozen=True)
class Target:
    """Where and how to reach a node; a change of any field means a new connection."""

    node_id: int
    address: str
    port: int
    user: str
    host_key: str


def _open_transport(address: str, port: int, preferred_key_type: str | None) -> paramiko.Transport:
    try:
        sock = socket.create_connection((address, port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise NodeUnreachable(f"cannot connect to {address}:{port}: {exc}") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    if preferred_key_type:
        opts = transport.get_security_options()
        keys = list(opts.key_types)
        if preferred_key_type in keys:
            keys.remove(preferred_key_type)
            opts.key_types = [preferred_key_type, *keys]
    try:
        transport.start_client(timeout=CONNECT_TIMEOUT)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise NodeUnreachable(f"SSH handshake with {address}:{port} failed: {exc}") from None
    return transport


def fetch_host_key(address: str, port: int) -> paramiko.PKey:
    """The key a node presents now (ed25519 preferred); used by node_add to pin it."""
    transport = _open_transport(address, port, "ssh-ed25519")
    try:
        return transport.get_remote_server_key()
    finally:
        transport.close()


def load_panel_key(path: str) -> paramiko.PKey:
    p = Path(path)
    if not p.exists():
        raise PermanentStepError(
            f"the panel's SSH key {path} does not exist: run manage.py node_local_setup "
            "or set PROVISIONING_SSH_KEY"
        )
    try:
        return paramiko.Ed25519Key.from_private_key_file(path)
    except paramiko.SSHException:
        return paramiko.RSAKey.from_private_key_file(path)


class NodeSession:
    """An authenticated connection to one node and the node agent's channel on it."""

    def __init__(self, target: Target, key_path: str) -> None:
        self.target = target
        self.key_path = key_path
        self.lock = threading.Lock()
        self._transport: paramiko.Transport | None = None
        self._agent: paramiko.Channel | None = None
        self._agent_buf = b""

    def _transport_up(self) -> paramiko.Transport:
        if self._transport is not None and self._transport.is_active():
            return self._transport
        self.close()
        t = self.target
        pinned = parse_host_key(t.host_key)
        transport = _open_transport(t.address, t.port, pinned.get_name())
        presented = transport.get_remote_server_key()
        if presented.get_name() != pinned.get_name() or presented.asbytes() != pinned.asbytes():
            transport.close()
            raise HostKeyRefused(
                f"host key of {t.address}:{t.port} does not match the pinned key: it presented "
                f"{presented.get_name()} {fingerprint(presented)}, pinned is "
                f"{fingerprint(pinned)}. If the node was reinstalled, pin the new key with "
                "manage.py node_add --repin after checking it.",
                clean=True,
            )
        try:
            transport.auth_publickey(t.user, load_panel_key(self.key_path))
        except paramiko.AuthenticationException as exc:
            transport.close()
            raise PermanentStepError(
                f"the node refused the panel's key for {t.user}@{t.address}: {exc}"
            ) from None
        except (paramiko.SSHException, OSError, EOFError) as exc:
            transport.close()
            raise TransientStepError(f"SSH authentication did not finish: {exc}") from None
        transport.set_keepalive(30)
        self._transport = transport
        return transport

    def _open_channel(self, command: str) -> paramiko.Channel:
        transport = self._transport_up()
        try:
            chan = transport.open_session(timeout=CONNECT_TIMEOUT)
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise TransientStepError(f"cannot open a channel on the node: {exc}") from None
        return chan

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        self._agent, self._agent_buf = None, b""

    def call(self, actions: list[AgentAction], *, tier: str, timeout: float) -> AgentResult:
        """Send the actions as one request to the node agent and read its answer.

        A channel that turns out to be closed before anything was answered (the node restarted
        sshd, the agent exited) is reopened and the request sent once more: actions are
        idempotent. A request that gets no answer in ``timeout`` drops the connection and
        raises ``OutcomeUnknown``.
        """
        request_id = secrets.token_hex(8)
        line = (
            json.dumps(
                {"id": request_id, "actions": [a.wire() for a in actions]},
                separators=(",", ":"),
                ensure_ascii=True,
            )
            + "\n"
        ).encode()
        with self.lock:
            for attempt in (1, 2):
                reused = self._agent is not None and not self._agent.closed
                if not reused:
                    self._agent = self._open_channel(f"{AGENT} --tier {tier}")
                    self._agent_buf = b""
                started = time.monotonic()
                try:
                    answer = self._agent_round_trip(line, started + timeout)
                except _ChannelClosed as exc:
                    self.close()
                    if reused and attempt == 1:
                        continue
                    raise OutcomeUnknown(f"the node agent closed the channel{exc}") from None
                except OutcomeUnknown:
                    self.close()
                    raise
                except (OSError, EOFError, paramiko.SSHException) as exc:
                    self.close()
                    if reused and attempt == 1:
                        continue
                    raise OutcomeUnknown(
                        f"the connection dropped during a request: {exc}"
                    ) from None
                return _parse_answer(answer, request_id, int((time.monotonic() - started) * 1000))
        raise OutcomeUnknown("the node agent's channel could not be reopened")

    def _agent_round_trip(self, line: bytes, deadline: float) -> bytes:
        chan = self._agent
        assert chan is not None
        chan.sendall(line)
        while True:
            end = self._agent_buf.find(b"\n")
            if end >= 0:
                answer = self._agent_buf[:end]
                self._agent_buf = self._agent_buf[end + 1 :]
                return answer
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OutcomeUnknown("the node did not answer in time; the outcome is unknown")
            chan.settimeout(remaining)
            try:
                chunk = chan.recv(1 << 20)
            except TimeoutError:
                raise OutcomeUnknown(
                    "the node did not answer in time; the outcome is unknown"
                ) from None
            if not chunk:
                err = b""
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                status = chan.recv_exit_status() if chan.exit_status_ready() else None
                if status == 127 and not self._agent_buf:
                    raise PermanentStepError(
                        "the node agent is not installed on this node: run "
                        "deploy/node/bootstrap.sh on it"
                    )
                detail = err.decode(errors="replace").strip()[-300:]
                raise _ChannelClosed(f" (exit {status}): {detail}" if detail else "")
            self._agent_buf += chunk


class _ChannelClosed(Exception):
    """The agent's channel ended without an answer."""


def _parse_answer(raw: bytes, request_id: str, ms: int) -> AgentResult:
    try:
        answer = json.loads(raw)
    except ValueError:
        raise OutcomeUnknown(f"unreadable answer from the node agent: {raw[:200]!r}") from None
    if not isinstance(answer, dict) or answer.get("id") not in (request_id, None):
        raise OutcomeUnknown("the node agent answered another request")
    results = []
    for r in answer.get("results") or []:
        results.append(
            ActionResult(
                action=str(r.get("action", "")),
                ok=bool(r.get("ok")),
                changed=bool(r.get("changed")),
                data=r.get("data") or {},
                error=r.get("error"),
                skipped=bool(r.get("skipped")),
                ms=int(r.get("ms") or 0),
            )
        )
    return AgentResult(ok=bool(answer.get("ok")), results=results, ms=ms, error=answer.get("error"))


class _Pool:
    """One session per node in this process; rebuilt after a fork or a change of target."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.sessions: dict[tuple[int, str], NodeSession] = {}

    def get(self, target: Target, key_path: str) -> NodeSession:
        with self.lock:
            if self.pid != os.getpid():
                # Inherited across fork: the sockets belong to the parent.
                self.sessions, self.pid = {}, os.getpid()
            session = self.sessions.get((target.node_id, key_path))
            if session is None or session.target != target:
                if session is not None:
                    session.close()
                session = NodeSession(target, key_path)
                self.sessions[(target.node_id, key_path)] = session
            return session

    def forget(self, node_id: int) -> None:
        """Close this process's sessions to one node (its pinned key changed)."""
        with self.lock:
            for key in [k for k in self.sessions if k[0] == node_id]:
                self.sessions.pop(key).close()

    def close_all(self) -> None:
        with self.lock:
            for session in self.sessions.values():
                session.close()
            self.sessions = {}


pool = _Pool()


def call(
    target: Target,
    actions: list[AgentAction],
    *,
    key_path: str,
    timeout: float,
    tier: str = "worker",
) -> AgentResult:
    """Send actions to a node's agent through this process's connection to it."""
    if not actions:
        return AgentResult(ok=True, results=[])
    return pool.get(target, key_path).call(actions, tier=tier, timeout=timeout)
