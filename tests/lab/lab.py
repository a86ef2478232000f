"""A lab of Debian 12 nodes with systemd, booted with systemd-nspawn on a bridge of its own.

Used by the test suite (``tests/lab/plugin.py``) and by ``bench/lab.py``. Needs root,
``systemd-nspawn`` (systemd-container) and ``mmdebstrap`` (``deploy/dev/ensure-services.sh``
installs both).

How a lab comes up:

1. A bookworm root filesystem is built once with mmdebstrap from the Debian mirror named in
   this machine's apt sources, without SSH host keys or machine-id, so every node makes its
   own on first boot (cached in ``/var/cache/hostwright/lab/base-<hash>``).
2. The node stack is installed into it once: a builder node boots from a copy and the node
   bootstrap (``deploy/node/``) runs in it over SSH, with apt going through a proxy on the
   bridge that forwards only to the mirror hosts. The result, stripped of everything that
   identifies a node, is the template (``stack-<hash of deploy/node/>``): a changed bootstrap
   builds a new one.
3. Each node is a copy of the template with its own hostname, machine-id and address; it
   boots with systemd as PID 1 in cgroups of its own, makes its own host keys, and then gets
   the bootstrap copied in and run over SSH as an operator would (quick: the packages are in).

A lab holds a slot (a lock file): slot N owns the bridge ``hwlabN`` and ``10.213.N.0/24``
(the host is ``.1``, nodes ``.11`` upwards). What a session that died left in its slot is
removed when the slot is taken again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "deploy" / "node"
CACHE = Path(os.environ.get("HW_LAB_CACHE", "/var/cache/hostwright/lab"))
STATE = Path(os.environ.get("HW_LAB_STATE", "/var/lib/hostwright/lab"))
SLOTS = 3
MAX_NODES = 3
PROXY_PORT = 3142
SUITE = "bookworm"
# Bump when the way the base or the template is made changes.
RECIPE = "3"
BASE_PACKAGES = (
    "systemd,systemd-sysv,dbus,openssh-server,iproute2,python3,ca-certificates,curl,procps,"
    "libpam-systemd"
)
# What the node bootstrap is given in the lab: the production profile (sshd on 22, DNS on
# port 53 of every address, mail and SFTP on every address) plus Pebble as the ACME server.
BOOTSTRAP_ENV = {
    "NODE_PROFILE": "production",
    "NODE_ACME": "pebble",
    "PDNS_LOCAL_ADDRESS": "0.0.0.0",  # noqa: S104  (a node's own network: the lab bridge)
    "PDNS_LOCAL_PORT": "53",
    "MAIL_LISTEN": "all",
    "SFTP_LISTEN": "0.0.0.0",  # noqa: S104
}
# Left in the template by the builder node but belonging to one node: removed before caching.
# (The mail server's certificate stays: nginx's webmail block needs one from the start, and
# 80-mail makes a new one when the node's name differs.)
NODE_IDENTITY = (
    "etc/ssh/ssh_host_*",
    "etc/hostwright/pdns-api-key",
    "etc/hostwright/pdns-api-header",
    "etc/hostwright/pebble/cert.pem",
    "etc/hostwright/pebble/key.pem",
    "etc/hostwright/authorized_keys/root",
    "etc/mailname",
    "etc/hostwright/webmail-des-key",
    "etc/systemd/network/10-host0.network",
    "etc/apt/apt.conf.d/00hostwright-lab-proxy",
    "var/lib/dbus/machine-id",
    "var/log/hostwright/*",
    "var/log/journal/*",
    "root/hostwright-node",
)


class LabError(RuntimeError):
    pass


def network(slot: int) -> str:
    return f"10.213.{slot}"


def lab_addresses() -> list[str]:
    """Every address a lab node may have (pyproject's --allow-hosts lists exactly these)."""
    return [f"{network(s)}.{11 + i}" for s in range(1, SLOTS + 1) for i in range(MAX_NODES)]


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
    kw.setdefault("check", True)
    return subprocess.run(argv, capture_output=True, text=True, **kw)


# --- the mirror ------------------------------------------------------------------------------


def apt_sources(root: Path = Path("/")) -> list[tuple[str, list[str], list[str]]]:
    """(URI, suites, components) of every ``deb`` source in the one-line and deb822 files."""
    found: list[tuple[str, list[str], list[str]]] = []
    apt = root / "etc" / "apt"
    lists = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()  # type: ignore[assignment]
            if len(line) >= 3 and line[0] == "deb":
                found.append((line[1], [line[2]], list(line[3:])))
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for raw in stanza.splitlines():
                if raw.startswith("#") or ":" not in raw or raw[:1].isspace():
                    continue
                key, _, value = raw.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                found.append(
                    (uri, fields.get("suites", "").split(), fields.get("components", "").split())
                )
    return found


def debian_mirror() -> str:
    """The mirror this machine installs bookworm's main component from."""
    for uri, suites, components in apt_sources():
        if SUITE in suites and "main" in components and uri.startswith("http"):
            return uri.rstrip("/")
    raise LabError(f"no http(s) source for {SUITE} main in this machine's apt sources")


def mirror_hosts() -> list[str]:
    hosts = []
    for uri, suites, _ in apt_sources():
        if any(s.startswith(SUITE) for s in suites):
            host = re.sub(r"^[a-z]+://([^/:]+).*$", r"\1", uri)
            if host not in hosts:
                hosts.append(host)
    return hosts


# --- the cached template ---------------------------------------------------------------------


def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def operator_key() -> Path:
    """The operator's SSH key for the lab's nodes (root logs in with it before the bootstrap)."""
    key = CACHE / "operator_ed25519"
    if not key.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "hostwright-lab",
              "-f", str(key)])  # fmt: skip
    return key


def base_key() -> str:
    pub = Path(f"{operator_key()}.pub").read_text()
    return _digest(RECIPE, SUITE, BASE_PACKAGES, debian_mirror(), pub)


def stack_key() -> str:
    """Changes whenever a file of the node bootstrap changes (but the agent: every node's own
    bootstrap installs the agent of its checkout again, so a template with an older agent
    serves as well and a changed action does not cost a template build)."""
    files = sorted(
        p
        for p in NODE_DIR.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and "agent" not in p.relative_to(NODE_DIR).parts[:1]
    )
    parts: list[str | bytes] = [base_key(), json.dumps([BOOTSTRAP_ENV, NODE_IDENTITY])]
    for path in files:
        parts += [str(path.relative_to(NODE_DIR)), path.read_bytes()]
    return _digest(*parts)


@contextlib.contextmanager
def _locked(path: Path, *, blocking: bool = True) -> Iterator[bool]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_globs(root: Path, patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        for path in root.glob(pattern):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


def build_base(log: Path) -> Path:
    """The bookworm root filesystem without node identity (mmdebstrap once, then cached)."""
    target = CACHE / f"base-{base_key()}"
    if (target / "complete").exists():
        return target / "rootfs"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    rootfs = target / "rootfs"
    started = time.monotonic()
    with log.open("a") as out:
        subprocess.run(
            ["mmdebstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE,
             str(rootfs), debian_mirror()],
            stdout=out, stderr=subprocess.STDOUT, check=True, timeout=1200,
        )  # fmt: skip
    _remove_globs(rootfs, ("etc/ssh/ssh_host_*",))
    # Debian's unit checks the configuration (sshd -t) before anything made host keys: the
    # drop-in makes them first, so every node gets its own on first boot.
    dropin = rootfs / "etc/systemd/system/ssh.service.d/hostkeys.conf"
    dropin.parent.mkdir(parents=True, exist_ok=True)
    dropin.write_text("[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\n"
                      "ExecStartPre=/usr/sbin/sshd -t\n")  # fmt: skip
    wants = rootfs / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "systemd-networkd.service"
    if not link.exists():
        link.symlink_to("/lib/systemd/system/systemd-networkd.service")
    (rootfs / "etc/machine-id").write_text("")
    ssh_dir = rootfs / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    (ssh_dir / "authorized_keys").write_text(Path(f"{operator_key()}.pub").read_text())
    (ssh_dir / "authorized_keys").chmod(0o600)
    (target / "build.json").write_text(json.dumps({"seconds": time.monotonic() - started}))
    (target / "complete").write_text("")
    return rootfs


# --- nodes -------------------------------------------------------------------------------------


@dataclass
class LabNode:
    name: str
    address: str
    root: Path
    pid: int | None = None
    host_key: str = ""  # "ssh-ed25519 AAAA...", read from the node's own disk
    bootstrap_seconds: float = 0.0


@dataclass
class Lab:
    """A slot's bridge and nodes. ``Lab.open()`` takes a free slot; ``close()`` frees it."""

    slot: int
    log_dir: Path
    nodes: list[LabNode] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    _lock: object = None
    _proxy: subprocess.Popen[bytes] | None = None
    _running: dict[str, int] = field(default_factory=dict)  # nspawn pid by node name

    # --- slot and bridge -----------------------------------------------------------------

    @classmethod
    def open(cls) -> Lab:
        """Take the first free slot (waiting for slot 1 when all are busy)."""
        STATE.mkdir(parents=True, exist_ok=True)
        # Every slot is tried without waiting; when all are busy, the first one is waited for.
        for slot, blocking in [*((s, False) for s in range(1, SLOTS + 1)), (1, True)]:
            handle = (STATE / f"slot{slot}.lock").open("a")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                handle.close()
                continue
            lab = cls(slot=slot, log_dir=STATE / f"slot{slot}")
            lab._lock = handle
            lab.log_dir.mkdir(parents=True, exist_ok=True)
            lab._clean_slot()
            return lab
        raise LabError("no lab slot")

    @property
    def bridge(self) -> str:
        return f"hwlab{self.slot}"

    @property
    def host_address(self) -> str:
        return f"{network(self.slot)}.1"

    def _pids_file(self) -> Path:
        return self.log_dir / "pids.json"

    def _save_pids(self) -> None:
        self._pids_file().write_text(json.dumps(self._running))

    def _clean_slot(self) -> None:
        """Remove what a session that died left in this slot: nodes, cgroups, bridge, files."""
        try:
            pids = json.loads(self._pids_file().read_text())
        except (OSError, ValueError):
            pids = {}
        for name, pid in pids.items():
            _stop_process(int(pid))
            _remove_cgroups(name)
        for name in ("builder",):
            _remove_cgroups(self._machine(name))
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        for path in self.log_dir.glob("root-*"):
            _drop_root(path)
        self._pids_file().unlink(missing_ok=True)

    def _bridge_up(self) -> None:
        if subprocess.run(["ip", "link", "show", self.bridge], capture_output=True).returncode:
            _run(["ip", "link", "add", self.bridge, "type", "bridge"])
            _run(["ip", "addr", "add", f"{self.host_address}/24", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])

    def _machine(self, name: str) -> str:
        return f"lab{self.slot}-{name}"

    # --- the template ----------------------------------------------------------------------

    def template(self, panel_pubkey: str) -> Path:
        """The root filesystem with the node stack installed (built once per bootstrap)."""
        key = stack_key()
        target = CACHE / f"stack-{key}"
        with _locked(CACHE / "build.lock"):
            if (target / "complete").exists():
                return target / "rootfs"
            log = self.log_dir / "template.log"
            started = time.monotonic()
            base = build_base(log)
            self.timings["base_build_s"] = time.monotonic() - started
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            rootfs = target / "rootfs"
            _run(["cp", "-a", "--reflink=auto", str(base), str(rootfs)])
            self._bridge_up()
            self._start_proxy()
            # The first node's address: the builder is gone before the nodes boot.
            builder = LabNode(self._machine("builder"), f"{network(self.slot)}.11", rootfs)
            try:
                self._prepare(builder)
                self._boot(builder)
                self.bootstrap(builder, panel_pubkey)
            finally:
                self._stop(builder)
                self._stop_proxy()
            _remove_globs(rootfs, NODE_IDENTITY)
            (rootfs / "etc/machine-id").write_text("")
            seconds = time.monotonic() - started
            self.timings["template_build_s"] = seconds
            (target / "build.json").write_text(json.dumps({"seconds": seconds}))
            (target / "complete").write_text("")
            # Older templates are of no use once the bootstrap changed (unless a lab in
            # another slot still runs on one).
            mounts = Path("/proc/mounts").read_text()
            for old in CACHE.glob("stack-*"):
                if old != target and f"lowerdir={old}/" not in mounts:
                    shutil.rmtree(old, ignore_errors=True)
            return rootfs

    def _start_proxy(self) -> None:
        argv = [sys.executable, "-m", "tests.lab.aptproxy",
                "--listen", f"{self.host_address}:{PROXY_PORT}"]  # fmt: skip
        for host in mirror_hosts():
            argv += ["--allow", host]
        self._proxy = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL)  # fmt: skip
        # It says when it listens (the tests may not connect to the host's bridge address).
        assert self._proxy.stdout is not None
        # Recorded with the nodes: a session that dies leaves no proxy holding the port.
        self._running["aptproxy"] = self._proxy.pid
        self._save_pids()
        if self._proxy.stdout.readline().strip() != b"listening":
            raise LabError("the apt proxy for the lab did not start")

    def _stop_proxy(self) -> None:
        if self._proxy is not None:
            self._proxy.terminate()
            self._proxy.wait(timeout=10)
            self._proxy = None
            self._running.pop("aptproxy", None)
            self._save_pids()

    # --- one node --------------------------------------------------------------------------

    def _prepare(self, node: LabNode) -> None:
        """Hostname, a fresh machine-id, the address and apt's proxy, written before boot."""
        root = node.root
        (root / "etc/hostname").write_text(f"{node.name}\n")
        (root / "etc/machine-id").write_text(uuid.uuid4().hex + "\n")
        (root / "etc/hosts").write_text(
            f"127.0.0.1 localhost\n::1 localhost\n{node.address} {node.name}.lab {node.name}\n"
        )
        # Sorts before systemd's 80-container-host0.network, which would otherwise win.
        net = root / "etc/systemd/network/10-host0.network"
        net.parent.mkdir(parents=True, exist_ok=True)
        net.write_text(
            f"[Match]\nName=host0\n\n[Network]\nAddress={node.address}/24\nLinkLocalAddressing=no\n"
        )
        (root / "etc/apt/apt.conf.d/00hostwright-lab-proxy").write_text(
            f'Acquire::http::Proxy "http://{self.host_address}:{PROXY_PORT}";\n'
        )

    def _boot(self, node: LabNode, *, timeout: float = 60) -> None:
        """Boot with systemd as PID 1 in cgroups of its own; wait for sshd; read the host key."""
        log = (self.log_dir / f"{node.name}.console.log").open("ab")
        # The shell moves itself into the node's own cgroups before it becomes nspawn: nodes
        # sharing one would share (and on shutdown delete) each other's cgroup trees.
        script = (
            f"for h in systemd unified; do d=/sys/fs/cgroup/$h/hostwright-lab/{node.name}; "
            'mkdir -p "$d" && echo $$ >"$d/cgroup.procs"; done; '
            f"exec systemd-nspawn -b -D {node.root} -M {node.name} --register=no --keep-unit "
            f"--network-bridge={self.bridge} --resolv-conf=off --console=passive"
        )
        proc = subprocess.Popen(
            ["bash", "-c", script],
            env={**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"},
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, extra_groups=_proc_groups() or None,
        )  # fmt: skip
        log.close()
        node.pid = proc.pid
        self._running[node.name] = proc.pid
        self._save_pids()
        deadline = time.monotonic() + timeout
        pub = node.root / "etc/ssh/ssh_host_ed25519_key.pub"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LabError(f"{node.name} exited; see {self.log_dir}/{node.name}.console.log")
            if pub.exists() and _port_open(node.address, 22):
                node.host_key = " ".join(pub.read_text().split()[:2])
                return
            time.sleep(0.1)
        raise LabError(f"{node.name}: sshd did not answer within {timeout} s")

    def _stop(self, node: LabNode) -> None:
        if node.pid is not None:
            _stop_process(node.pid)
            node.pid = None
            self._running.pop(node.name, None)
            self._save_pids()
        _remove_cgroups(node.name)

    def ssh(self, node: LabNode, command: str, *, stdin: bytes | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess[bytes]:  # fmt: skip
        """Run a command on the node as root with the operator's key (host key checked)."""
        known = self.log_dir / f"{node.name}.known_hosts"
        known.write_text(f"{node.address} {node.host_key}\n")
        return subprocess.run(
            ["ssh", "-i", str(operator_key()), "-o", "BatchMode=yes",
             "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
             "-o", "ConnectTimeout=10", f"root@{node.address}", command],
            input=stdin, capture_output=True, timeout=timeout, check=False,
        )  # fmt: skip

    def bootstrap(self, node: LabNode, panel_pubkey: str) -> None:
        """Copy ``deploy/node`` in and run its bootstrap, as an operator would."""
        started = time.monotonic()
        archive = _run_bytes(["tar", "-C", str(NODE_DIR.parent), "--exclude=__pycache__",
                              "-czf", "-", NODE_DIR.name])  # fmt: skip
        copied = self.ssh(
            node,
            "rm -rf /root/hostwright-node && mkdir -p /root/hostwright-node && "
            "tar -xzf - -C /root/hostwright-node --strip-components=1",
            stdin=archive,
        )
        if copied.returncode:
            raise LabError(f"{node.name}: copying the bootstrap failed: {copied.stderr!r}")
        env = " ".join(f"{k}={v}" for k, v in BOOTSTRAP_ENV.items())
        result = self.ssh(
            node,
            f"{env} PANEL_PUBKEY='{panel_pubkey}' /root/hostwright-node/bootstrap.sh 2>&1",
        )
        (self.log_dir / f"{node.name}.bootstrap.log").write_bytes(result.stdout)
        if result.returncode:
            tail = result.stdout.decode(errors="replace")[-3000:]
            raise LabError(f"{node.name}: the node bootstrap failed:\n{tail}")
        node.bootstrap_seconds = time.monotonic() - started

    # --- the lab as a whole ------------------------------------------------------------------

    def up(self, *, count: int = MAX_NODES, panel_pubkey: str) -> list[LabNode]:
        """Template (cached), bridge, ``count`` nodes booted and bootstrapped in parallel."""
        if not 1 <= count <= MAX_NODES:
            raise LabError(f"a lab has 1 to {MAX_NODES} nodes")
        for tool in ("systemd-nspawn", "mmdebstrap"):
            if shutil.which(tool) is None:
                raise LabError(f"{tool} is missing: run deploy/dev/ensure-services.sh")
        started = time.monotonic()
        template = self.template(panel_pubkey)
        self._bridge_up()
        boot_started = time.monotonic()
        self.nodes = [
            LabNode(
                self._machine(f"n{i + 1}"),
                f"{network(self.slot)}.{11 + i}",
                self.log_dir / f"root-n{i + 1}" / "merged",
            )
            for i in range(count)
        ]
        self._each(lambda n: self._fresh_root(n, template))
        self.timings["copy_s"] = time.monotonic() - boot_started
        boot_started = time.monotonic()
        self._each(self._boot)
        self.timings["boot_s"] = time.monotonic() - boot_started
        bootstrap_started = time.monotonic()
        self._each(lambda n: self.bootstrap(n, panel_pubkey))
        self.timings["bootstrap_s"] = time.monotonic() - bootstrap_started
        self.timings["up_s"] = time.monotonic() - started
        return self.nodes

    def _fresh_root(self, node: LabNode, template: Path) -> None:
        """The template as the lower layer of an overlay: a node costs only what it writes."""
        top = node.root.parent
        _drop_root(top)
        for part in ("upper", "work", "merged"):
            (top / part).mkdir(parents=True)
        _run(["mount", "-t", "overlay", "overlay", "-o",
              f"lowerdir={template},upperdir={top / 'upper'},workdir={top / 'work'}",
              str(node.root)])  # fmt: skip
        self._prepare(node)

    def _each(self, job) -> None:
        errors: list[BaseException] = []

        def run(node: LabNode) -> None:
            try:
                job(node)
            except BaseException as exc:  # reported below, after every node had its turn
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]

    def stop(self, node: LabNode) -> None:
        """Shut a node down (SIGTERM to nspawn: a clean shutdown); its disk stays."""
        self._stop(node)

    def start(self, node: LabNode) -> None:
        """Boot a stopped node again from its disk (same host keys)."""
        self._boot(node)

    def rebuild(self, node: LabNode, panel_pubkey: str) -> None:
        """Reinstall a node from the template: new machine-id and new host keys."""
        self._stop(node)
        self._fresh_root(node, CACHE / f"stack-{stack_key()}" / "rootfs")
        self._boot(node)
        self.bootstrap(node, panel_pubkey)

    def close(self) -> None:
        """Stop every node, remove their disks and cgroups, the bridge; free the slot."""
        (self.log_dir / "timings.json").write_text(json.dumps(self.timings, indent=1))
        for node in self.nodes:
            with contextlib.suppress(Exception):
                self._stop(node)
            _drop_root(node.root.parent)
        self._stop_proxy()
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)
        self._pids_file().unlink(missing_ok=True)
        if self._lock is not None:
            self._lock.close()  # type: ignore[attr-defined]
            self._lock = None


def _run_bytes(argv: list[str]) -> bytes:
    return subprocess.run(argv, capture_output=True, check=True).stdout


def _port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def _stop_process(pid: int, timeout: float = 20) -> None:
    """SIGTERM an nspawn process (the node shuts down cleanly), SIGKILL if it hangs."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if not any(word in cmdline for word in (b"systemd-nspawn", b"bash", b"tests.lab.aptproxy")):
        return  # the pid was reused by something else
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _proc_groups() -> list[int]:
    """The group that may see every process when /proc is mounted with ``hidepid``.

    nspawn reads ``/proc/1/cgroup``; a node hardened against customers seeing each other's
    processes hides PID 1 even from root without that group.
    """
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[1] == "/proc":
            for option in fields[3].split(","):
                if option.startswith("gid="):
                    return [int(option[4:])]
    return []


def _drop_root(top: Path) -> None:
    """Unmount a node's overlay (if mounted) and delete its layers."""
    merged = top / "merged"
    if (
        os.path.ismount(merged)
        and subprocess.run(["umount", str(merged)], capture_output=True).returncode
    ):
        subprocess.run(["umount", "-l", str(merged)], capture_output=True, check=False)
    shutil.rmtree(top, ignore_errors=True)


def _remove_cgroups(name: str) -> None:
    """Remove a node's cgroup directories, deepest first."""
    for hierarchy in ("systemd", "unified"):
        top = Path(f"/sys/fs/cgroup/{hierarchy}/hostwright-lab/{name}")
        if not top.exists():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for path in [*dirs, top]:
            with contextlib.suppress(OSError):
                path.rmdir()
