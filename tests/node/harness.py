"""A real hosting node on loopback, and a real Celery worker, for the whole test session.

Registered from ``tests/conftest.py`` (``pytest_plugins = ["tests.node.harness"]``).

Fixtures
--------
``test_node`` (session)
    Runs ``deploy/node/bootstrap.sh`` on this machine with ``NODE_PROFILE=test`` (needs root):
    nginx on port 80, PHP-FPM 8.2, MariaDB, and an sshd of its own on 127.0.0.1:2222 that
    authorizes two panel keys generated under ``var/test-node/``, each forced to run the node
    agent (the worker's for every action, the web tier's for file and log actions). Returns a
    ``TestNode`` with ``address``, ``port``, ``host_key`` (pinned), ``key_path``,
    ``web_key_path``. The engine's settings in this
    process point at that key, and accounts are named ``hwt<tag>...`` (a tag per session), so
    test accounts never collide with system users or with another session running at the
    same time; this session's accounts, and those of sessions that died, are removed at
    start and end.
    Set ``HW_TEST_NODE_PARTS="10 20 30 40 50"`` to run only some bootstrap parts.
``hosting_node`` (function)
    A ``Node`` row for that node in the test database (roles web, db, mail, dns; host key
    pinned; shared IP 127.0.0.1, dedicated IPs 127.0.0.2 and 127.0.0.3). Needs database
    access (``@pytest.mark.django_db``, with ``transaction=True`` when a worker must see it).
``provisioning_worker`` (session)
    A Celery worker subprocess on the ``provisioning`` queue, using this session's broker and
    the test database (so use ``django_db(transaction=True)``). Failpoints are on, retries
    are quick (backoff 1 s, 2 retries). ``.kill()`` SIGKILLs its whole process group,
    ``.ensure()`` starts it again.

Helpers: ``unique_domain(label)`` (several sessions share one nginx: never hard-code a
domain), ``wait_for_operation(op)``, ``http_get(host, path)`` (nginx on 127.0.0.1:80 with
that Host header), ``node_leftovers(username)`` (what of an account is still on the node).
Mark tests that use these with ``@pytest.mark.node`` (and ``worker`` for the worker).
"""

from __future__ import annotations

import http.client
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
BOOTSTRAP = ROOT / "deploy" / "node" / "bootstrap.sh"
KEY_DIR = ROOT / "var" / "test-node"
SSH_PORT = 2222
USER_PREFIX = "hwt"
# Worker settings: quick retries so fault tests finish, failpoints on.
WORKER_ENV = {
    "PROVISIONING_FAILPOINTS": "1",
    "PROVISIONING_RETRY_BACKOFF": "1",
    "PROVISIONING_STEP_RETRIES": "2",
    "PROVISIONING_COMMAND_TIMEOUT": "60",
    "PROVISIONING_BREAKER_COOLDOWN": "2",
}


@dataclass(frozen=True)
class TestNode:
    address: str
    port: int
    host_key: str
    key_path: str
    web_key_path: str = ""
    user_prefix: str = USER_PREFIX


def _run(argv: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kw)


def run_logged(
    argv: list[str], *, log: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a node script with its output in ``log``, returned as ``stdout``.

    Not a pipe: a daemon the script starts may keep the script's stdout or stderr, and reading
    a pipe would then wait for that daemon to exit, not for the script.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=timeout,
            check=False,
        )
    return subprocess.CompletedProcess(argv, result.returncode, log.read_text(), "")


SESSIONS = Path("/run/hostwright/test-sessions")


def _session_alive(tag: str) -> bool:
    """Whether the test session that owns accounts with this tag is still running."""
    try:
        pid = int((SESSIONS / tag).read_text())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _removable(name: str, own_tag: str | None) -> bool:
    """Test accounts are named hwt<tag>...: remove ours, and those of sessions that died.

    Several test sessions may share this node at once; each only removes what is its own
    or was left behind by a session that no longer runs.
    """
    if not name.startswith(USER_PREFIX) or len(name) < len(USER_PREFIX) + 2:
        return False
    tag = name[len(USER_PREFIX) : len(USER_PREFIX) + 2]
    return tag == own_tag or not _session_alive(tag)


def cleanup_test_accounts(own_tag: str | None = None) -> list[str]:
    """Remove test accounts of this session and of dead sessions from this node."""
    users = [
        line.split(":")[0]
        for line in Path("/etc/passwd").read_text().splitlines()
        if ":hostwright service " in line and _removable(line.split(":")[0], own_tag)
    ]
    sites = [
        p
        for p in Path("/etc/nginx/hostwright/sites").glob(f"{USER_PREFIX}*.conf*")
        if _removable(p.name, own_tag)
    ]
    pools = [
        p
        for p in Path("/etc/php/8.2/fpm/pool.d").glob(f"hw-{USER_PREFIX}*.conf*")
        if _removable(p.name[3:], own_tag)
    ]
    for user in users:
        _run(["pkill", "-KILL", "-u", user])
        _run(["userdel", "--remove", user])
    for path in [*sites, *pools]:
        path.unlink(missing_ok=True)
    for home in Path("/home").glob(f"{USER_PREFIX}*"):
        if _removable(home.name, own_tag):
            _run(["rm", "-rf", "--one-file-system", str(home)])
    query = f"SELECT user FROM mysql.user WHERE user LIKE '{USER_PREFIX}%'"  # noqa: S608
    dbs = _run(["mysql", "-N", "-B", "-e", f"SHOW DATABASES LIKE '{USER_PREFIX}%'"]).stdout.split()
    for db in dbs:
        if _removable(db, own_tag):
            _run(["mysql", "-e", f"DROP DATABASE IF EXISTS `{db}`"])
    for db_user in _run(["mysql", "-N", "-B", "-e", query]).stdout.split():
        if _removable(db_user, own_tag):
            _run(["mysql", "-e", f"DROP USER IF EXISTS '{db_user}'@'localhost'"])
    # Their cron jobs: crontab, commands and log (cron would report their users missing).
    for pattern in (
        f"/var/spool/cron/crontabs/{USER_PREFIX}*",
        f"/etc/hostwright/cron/{USER_PREFIX}*",
        f"/var/log/hostwright/cron/{USER_PREFIX}*.log",
    ):
        for path in Path("/").glob(pattern.lstrip("/")):
            if _removable(path.name.removesuffix(".log"), own_tag):
                _run(["rm", "-rf", "--one-file-system", str(path)])
    for ctl in ("cpu", "cpuacct", "memory", "pids"):
        for d in Path(f"/sys/fs/cgroup/{ctl}/hostwright").glob(f"{USER_PREFIX}*"):
            if _removable(d.name, own_tag):
                _run(["rmdir", str(d)])
    if sites:
        _run(["nginx", "-s", "reload"])
    if pools:
        pid = Path("/run/php/php8.2-fpm.pid")
        if pid.exists():
            _run(["kill", "-USR2", pid.read_text().strip()])
    return users


def node_leftovers(username: str) -> list[str]:
    """What of an account is still on this node: [] means nothing."""
    found = []
    if _run(["getent", "passwd", username]).returncode == 0:
        found.append(f"user {username}")
    if Path(f"/home/{username}").exists():
        found.append(f"home /home/{username}")
    for path in (
        f"/etc/php/8.2/fpm/pool.d/hw-{username}.conf",
        f"/etc/nginx/hostwright/sites/{username}.conf",
        f"/run/php/hw-{username}.sock",
        f"/var/spool/cron/crontabs/{username}",
        f"/etc/hostwright/cron/{username}",
    ):
        if Path(path).exists():
            found.append(path)
    for ctl in ("cpu", "cpuacct", "memory", "pids"):
        if Path(f"/sys/fs/cgroup/{ctl}/hostwright/{username}").exists():
            found.append(f"cgroup {ctl}")
    dbs = _run(["mysql", "-N", "-B", "-e", f"SHOW DATABASES LIKE '{username}%'"]).stdout.split()
    found += [f"database {db}" for db in dbs]
    db_users = _run(
        # Account names come from the engine's validated pattern.
        ["mysql", "-N", "-B", "-e", f"SELECT user FROM mysql.user WHERE user = '{username}'"]  # noqa: S608
    ).stdout.split()
    found += [f"database user {u}" for u in db_users]
    return found


def unique_domain(label: str) -> str:
    """A domain no other test (in this session or another one on this node) uses."""
    return f"{label}-{secrets.token_hex(3)}.example"


def http_get(host: str, path: str = "/", *, address: str = "127.0.0.1") -> tuple[int, str]:
    """GET from the node's nginx with the given Host header: (status, body)."""
    conn = http.client.HTTPConnection(address, 80, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


@pytest.fixture(scope="session")
def test_node() -> Iterator[TestNode]:
    if os.geteuid() != 0:
        pytest.skip("the test node needs root (it creates users, pools and server blocks)")
    KEY_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = KEY_DIR / "id_ed25519"
    web_key = KEY_DIR / "id_ed25519_web"
    for path, comment in ((key, "hostwright-test"), (web_key, "hostwright-test-web")):
        if not path.exists():
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                check=True,
            )
    env = {
        **os.environ,
        "NODE_PROFILE": "test",
        "NODE_ACME": "pebble",
        "PANEL_PUBKEY": Path(f"{key}.pub").read_text().strip(),
        "PANEL_WEB_PUBKEY": Path(f"{web_key}.pub").read_text().strip(),
        "HW_SSH_PORT": str(SSH_PORT),
    }
    if os.environ.get("HW_TEST_NODE_PARTS"):
        env["NODE_PARTS"] = os.environ["HW_TEST_NODE_PARTS"]
    result = run_logged([str(BOOTSTRAP)], log=KEY_DIR / "bootstrap.log", env=env, timeout=900)
    assert result.returncode == 0, f"node bootstrap failed:\n{result.stdout}"

    from provisioning import ssh

    host_key = ssh.host_key_text(ssh.fetch_host_key("127.0.0.1", SSH_PORT))
    # Accounts of this session are named hwt<tag>...; the tag file says the session runs.
    SESSIONS.mkdir(parents=True, exist_ok=True)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    tag = next(
        t
        for t in (secrets.choice(alphabet[:26]) + secrets.choice(alphabet) for _ in range(500))
        if not _session_alive(t)
    )
    (SESSIONS / tag).write_text(str(os.getpid()))
    saved = (
        settings.PROVISIONING_SSH_KEY,
        settings.PROVISIONING_WEB_SSH_KEY,
        settings.PROVISIONING_USER_PREFIX,
    )
    settings.PROVISIONING_SSH_KEY = str(key)
    settings.PROVISIONING_WEB_SSH_KEY = str(web_key)
    settings.PROVISIONING_USER_PREFIX = USER_PREFIX + tag
    cleanup_test_accounts(own_tag=tag)
    yield TestNode(
        address="127.0.0.1",
        port=SSH_PORT,
        host_key=host_key,
        key_path=str(key),
        web_key_path=str(web_key),
        user_prefix=USER_PREFIX + tag,
    )
    ssh.pool.close_all()
    cleanup_test_accounts(own_tag=tag)
    (SESSIONS / tag).unlink(missing_ok=True)
    (
        settings.PROVISIONING_SSH_KEY,
        settings.PROVISIONING_WEB_SSH_KEY,
        settings.PROVISIONING_USER_PREFIX,
    ) = saved


@pytest.fixture
def hosting_node(test_node: TestNode):
    """The test node as a ``Node`` row (host key pinned) with its IP addresses."""
    from provisioning.models import IPAddress, Node

    node = Node.objects.create(
        name="test-node",
        address=test_node.address,
        port=test_node.port,
        ssh_user="root",
        host_key=test_node.host_key,
        roles=["web", "db", "mail", "dns"],
        capacity_accounts=1000,
    )
    IPAddress.objects.create(address="127.0.0.1", node=node, kind=IPAddress.Kind.SHARED)
    for address in ("127.0.0.2", "127.0.0.3"):
        IPAddress.objects.create(address=address, node=node, kind=IPAddress.Kind.DEDICATED)
    return node


def _test_database_url() -> str:
    db = settings.DATABASES["default"]
    return (
        f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )


class Worker:
    """A Celery worker subprocess for the provisioning queue."""

    def __init__(
        self, key_path: str, log_path: Path, extra_env: dict[str, str] | None = None
    ) -> None:
        self.key_path = key_path
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = {
            **os.environ,
            **WORKER_ENV,
            **self.extra_env,
            "DJANGO_SETTINGS_MODULE": os.environ.get(
                "DJANGO_SETTINGS_MODULE", "hosting.test_settings"
            ),
            "DATABASE_URL": _test_database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "PROVISIONING_SSH_KEY": self.key_path,
            "PROVISIONING_WEB_SSH_KEY": settings.PROVISIONING_WEB_SSH_KEY,
            "PROVISIONING_USER_PREFIX": settings.PROVISIONING_USER_PREFIX,
        }
        name = f"hwtest{os.getpid()}-{self.starts}@localhost"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "hosting",
                "worker",
                "-Q",
                "provisioning",
                "-c",
                "2",
                "-n",
                name,
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
                "-l",
                "INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        from hosting.celery import app

        for _ in range(120):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the worker exited; see {self.log_path}")
            if app.control.ping(destination=[name], timeout=0.5):
                return
        raise RuntimeError(f"the worker did not start; see {self.log_path}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ensure(self) -> None:
        if not self.alive():
            self.start()

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def _clear_broker() -> None:
    """Drop messages left by earlier sessions (including unacknowledged ones)."""
    import redis

    from hosting.celery import app

    app.control.purge()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete("unacked", "unacked_index", "provisioning")


def quiet_worker(timeout: float = 10) -> None:
    """Drop queued provisioning tasks and wait until no step is running in this database.

    (A step left "running" by a worker a test killed on purpose is older than a minute, or is
    waited for at most ``timeout`` seconds.)
    """
    import redis
    from django.utils import timezone

    from provisioning.models import StepRun

    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete("provisioning")
    deadline = time.monotonic() + timeout
    recent = timezone.now() - timedelta(minutes=1)
    idle_checks = 0
    while time.monotonic() < deadline and idle_checks < 2:
        running = StepRun.objects.filter(
            status=StepRun.Status.RUNNING, started_at__gte=recent
        ).exists()
        idle_checks = 0 if running else idle_checks + 1
        time.sleep(0.1)


def terminate_services_left(*, timeout: float = 300) -> None:
    """Terminate, through the engine, every service of this test's database that is live or
    failed, so that its zone, mail domain and the rest do not stay on the shared node (a test
    that ends with an account still up uses it as a cleanup fixture's teardown)."""
    from provisioning import services
    from provisioning.errors import ProvisioningRefused
    from provisioning.models import Operation, Service

    for service in Service.objects.exclude(state=Service.State.TERMINATED).order_by("pk"):
        running = service.operations.filter(state__in=Operation.RUNNING_STATES).first()
        if running is not None:
            wait_for_operation(running, timeout=timeout)
        service = Service.objects.select_related("node").get(pk=service.pk)
        try:
            terminate = services.service_terminate(service=service)
        except ProvisioningRefused:
            continue  # (pending with nothing running: nothing of it reached the node)
        wait_for_operation(terminate, timeout=timeout)


@pytest.fixture
def services_terminated_after(worker: Worker) -> Iterator[None]:
    """Terminate at the end of the test every service it left live or failed."""
    yield
    terminate_services_left()


@pytest.fixture(scope="session")
def provisioning_worker(
    test_node: TestNode, django_db_setup, django_db_blocker
) -> Iterator[Worker]:
    _clear_broker()
    log_path = KEY_DIR / "worker.log"
    log_path.write_bytes(b"")
    worker = Worker(test_node.key_path, log_path)
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def worker(provisioning_worker: Worker) -> Worker:
    """The session's worker, restarted if a test killed it."""
    provisioning_worker.ensure()
    return provisioning_worker


def wait_for_operation(operation, *, timeout: float = 180, states=None):
    """Poll the database until the operation reaches a final state (or ``states``)."""
    from provisioning.models import Operation

    wanted = tuple(states or Operation.FINAL_STATES)
    deadline = time.monotonic() + timeout
    while True:
        op = Operation.objects.get(pk=operation.pk)
        if op.state in wanted:
            return op
        if time.monotonic() > deadline:
            raise AssertionError(
                f"operation {op} did not reach {wanted}; events: "
                + "; ".join(f"{e.from_state}->{e.to_state} {e.detail}" for e in op.events.all())
            )
        time.sleep(0.2)
