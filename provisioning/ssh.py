"""The SSH executor: the only module that talks paramiko.

One connection per node (and key) per worker process. On it, ``call`` speaks the node agent's
protocol (``deploy/node/agent``): one exec channel running ``hostwright-agent`` for the whole
life of the connection (the key's forced command runs whatever is asked), one JSON line per
request with all of a step's actions, one JSON line back. A request on the open channel costs
a few milliseconds; timeouts apply to the connect and to every request, and a channel found
broken is reopened once.

Until every caller speaks to the agent, ``run`` keeps the older protocol on the same
connection: one long-lived remote ``bash -s``.
A step sends all its commands as one script over that shell and reads back one line: the
exit code, the tails of stdout and stderr, and a trace with every command's exit code and
duration. A new exec channel costs about 80 ms; a script on the open shell about 4 ms.

Commands are argument lists joined with ``shlex.join``; values are validated before they
are put into a ``Command`` (see ``provisioning.validators``). Host keys are pinned: a node
presenting any key other than the one stored on its ``Node`` row is refused and the
fingerprint it showed is reported.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shlex
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

TAIL_BYTES = 4096
CONNECT_TIMEOUT = 10.0
AGENT = "/usr/local/sbin/hostwright-agent"
# Codes of agent errors raised before the action touched anything.
REFUSED_BEFORE_ACTING = frozenset({"invalid", "unknown_action", "forbidden", "bad_request"})

# Defined once per remote shell. hw_run records each command's exit code and duration in
# the trace file; hw_put writes a file through a temporary name so readers never see half.
_PREAMBLE = r"""
export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
HW_D=$(mktemp -d /tmp/hw-exec.XXXXXXXX)
trap 'rm -rf "$HW_D"' EXIT
hw_run() { local i=$1; shift; local t0=$EPOCHREALTIME; "$@"; local rc=$?
  printf '%s %s %s %s\n' "$i" "$rc" "$t0" "$EPOCHREALTIME" >>"$HW_D/t"; return $rc; }
hw_put() { local tmp="$1.hwtmp.$$"
  printf '%s' "$4" >"$tmp" && chmod "$2" "$tmp" && chown "$3" "$tmp" && mv -f "$tmp" "$1"; }
"""


_EXTRA_FUNCTIONS: list[str] = []


def register_shell_functions(text: str) -> None:
    """Add shell functions to every remote shell opened after this (call at import time)."""
    if text not in _EXTRA_FUNCTIONS:
        _EXTRA_FUNCTIONS.append(text)


@dataclass(frozen=True)
class Command:
    """One command for a node: an argument list, never a shell string.

    ``check=False`` lets the script go on when the command fails (probes that look at the
    node). ``secrets`` are masked wherever the command or its output is recorded.
    ``label`` replaces the recorded text (used for file writes whose content is long).
    """

    argv: tuple[str, ...]
    check: bool = True
    secrets: tuple[str, ...] = ()
    label: str = ""

    def __post_init__(self) -> None:
        if not self.argv:
            raise PermanentStepError("empty command")
        for arg in self.argv:
            if not isinstance(arg, str) or "\x00" in arg:
                raise PermanentStepError(f"refusing a command argument: {arg!r}")

    def render(self) -> str:
        return shlex.join(self.argv)

    def display(self) -> str:
        return redact(self.label or self.render(), self.secrets)


def cmd(*argv: str, check: bool = True, secrets: tuple[str, ...] = (), label: str = "") -> Command:
    return Command(tuple(argv), check=check, secrets=secrets, label=label)


def put_file(
    path: str,
    content: str,
    *,
    mode: str = "0644",
    owner: str = "root:root",
    secrets: tuple[str, ...] = (),
) -> Command:
    """Write a file atomically (temporary name, then rename)."""
    return Command(
        ("hw_put", path, mode, owner, content),
        label=f"write {path} ({len(content)} bytes)",
        secrets=secrets,
    )


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


@dataclass
class CommandRecord:
    cmd: str
    exit: int
    ms: int

    def as_dict(self) -> dict[str, object]:
        return {"cmd": self.cmd, "exit": self.exit, "ms": self.ms}


@dataclass
class ScriptResult:
    exit: int
    stdout: str
    stderr: str
    commands: list[CommandRecord] = field(default_factory=list)
    ms: int = 0

    @property
    def ok(self) -> bool:
        return self.exit == 0

    def exit_of(self, index: int) -> int | None:
        """Exit code of the index-th command of the script, None when it did not run."""
        return self.commands[index].exit if index < len(self.commands) else None


def render_script(commands: list[Command], nonce: str) -> str:
    """The text sent to the remote shell for one batch of commands."""
    lines = [': >"$HW_D/t"', "(", "set -o pipefail"]
    for i, c in enumerate(commands):
        line = f"hw_run {i} {c.render()}"
        lines.append(f"{line} || exit $?" if c.check else line)
    lines.append("exit 0")  # a failing check=False command last must not fail the script
    lines.append(') </dev/null >"$HW_D/o" 2>"$HW_D/e"')
    lines.append(
        f"printf '{nonce} %s :%s :%s :%s\\n' \"$?\" "
        f'"$(tail -c {TAIL_BYTES} "$HW_D/o" | base64 -w0)" '
        f'"$(tail -c {TAIL_BYTES} "$HW_D/e" | base64 -w0)" "$(base64 -w0 <"$HW_D/t")"'
    )
    return "\n".join(lines) + "\n"


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
    """An authenticated connection to one node: the agent's channel (and the older shell)."""

    def __init__(self, target: Target, key_path: str) -> None:
        self.target = target
        self.key_path = key_path
        self.lock = threading.Lock()
        self._transport: paramiko.Transport | None = None
        self._chan: paramiko.Channel | None = None
        self._buf = b""
        self._agent: paramiko.Channel | None = None
        self._agent_buf = b""

    @property
    def connected(self) -> bool:
        return bool(self._transport and self._transport.is_active() and self._chan)

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

    def connect(self) -> None:
        chan = self._open_channel("exec bash --noprofile --norc -s")
        self._chan, self._buf = chan, b""
        chan.sendall((_PREAMBLE + "\n".join(_EXTRA_FUNCTIONS) + "\n").encode())

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport, self._chan, self._buf = None, None, b""
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

    def run(self, commands: list[Command], timeout: float) -> ScriptResult:
        """Run commands as one script; raises OutcomeUnknown when the result did not come back."""
        with self.lock:
            if not self.connected:
                self.connect()
            assert self._chan is not None
            nonce = "HWEND" + secrets.token_hex(8)
            started = time.monotonic()
            try:
                self._chan.sendall(render_script(commands, nonce).encode())
                line = self._read_marker(nonce.encode(), started + timeout)
            except OutcomeUnknown:
                self.close()
                raise
            except (OSError, EOFError, paramiko.SSHException) as exc:
                self.close()
                raise OutcomeUnknown(f"the connection dropped while commands ran: {exc}") from None
            ms = int((time.monotonic() - started) * 1000)
        return _parse_marker(line, commands, ms)

    def _read_marker(self, nonce: bytes, deadline: float) -> bytes:
        assert self._chan is not None
        while True:
            start = self._buf.find(nonce)
            if start >= 0:
                end = self._buf.find(b"\n", start)
                if end >= 0:
                    line = self._buf[start:end]
                    self._buf = self._buf[end + 1 :]
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OutcomeUnknown("the node did not answer in time; the outcome is unknown")
            self._chan.settimeout(remaining)
            try:
                chunk = self._chan.recv(65536)
            except TimeoutError:
                raise OutcomeUnknown(
                    "the node did not answer in time; the outcome is unknown"
                ) from None
            if not chunk:
                err = b""
                while self._chan.recv_stderr_ready():
                    err += self._chan.recv_stderr(65536)
                raise OutcomeUnknown(
                    "the remote shell closed while commands ran"
                    + (f": {err.decode(errors='replace')[-500:]}" if err else "")
                )
            self._buf += chunk


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


def _b64(field_: bytes) -> str:
    return base64.b64decode(field_.lstrip(b":") or b"").decode(errors="replace")


def _parse_marker(line: bytes, commands: list[Command], ms: int) -> ScriptResult:
    parts = line.split(b" ")
    if len(parts) != 5:
        raise OutcomeUnknown(f"unreadable answer from the node: {line[:200]!r}")
    secrets_ = tuple(s for c in commands for s in c.secrets)
    records = []
    for row in _b64(parts[4]).splitlines():
        i, rc, t0, t1 = row.split()
        records.append(
            CommandRecord(
                cmd=commands[int(i)].display(),
                exit=int(rc),
                ms=round((float(t1) - float(t0)) * 1000),
            )
        )
    return ScriptResult(
        exit=int(parts[1]),
        stdout=redact(_b64(parts[2]), secrets_),
        stderr=redact(_b64(parts[3]), secrets_),
        commands=records,
        ms=ms,
    )


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

    def close_all(self) -> None:
        with self.lock:
            for session in self.sessions.values():
                session.close()
            self.sessions = {}


pool = _Pool()


def run(target: Target, commands: list[Command], *, key_path: str, timeout: float) -> ScriptResult:
    """Run commands on a node through this process's session for it."""
    return pool.get(target, key_path).run(commands, timeout)


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
