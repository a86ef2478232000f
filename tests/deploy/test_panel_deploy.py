"""What deploy/panel/ ships is run here: units verified, gunicorn behind nginx answering."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
PANEL = ROOT / "deploy" / "panel"
UNITS = sorted((PANEL / "systemd").glob("*.service"))


def render_unit(unit: Path, tmp_path: Path) -> Path:
    env_file = tmp_path / "hostwright.env"
    env_file.touch()
    text = unit.read_text().replace("/opt/hostwright", str(ROOT))
    text = text.replace("/etc/hostwright/hostwright.env", str(env_file))
    name = unit.name.replace("@.service", "@provisioning.service")
    out = tmp_path / name
    out.write_text(text)
    return out


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
@pytest.mark.parametrize("unit", UNITS, ids=[u.name for u in UNITS])
def test_systemd_unit_verifies_cleanly(unit: Path, tmp_path: Path) -> None:
    rendered = render_unit(unit, tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(rendered)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def exec_start_argv(unit: Path) -> list[str]:
    lines = unit.read_text().replace("\\\n", " ").splitlines()
    command = next(line for line in lines if line.startswith("ExecStart="))
    return shlex.split(command.removeprefix("ExecStart=").replace("/opt/hostwright", str(ROOT)))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=panel.example.com", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.mark.django_db
@pytest.mark.node  # the node bootstrap installs the nginx this test runs
def test_gunicorn_unit_behind_the_nginx_site_serves_the_panel_in_production_mode(
    tmp_path: Path, test_node
) -> None:
    # Given the web unit's gunicorn command, in production mode, on the test database
    db = connection.settings_dict
    gunicorn_port, http_port, https_port = free_port(), free_port(), free_port()
    argv = exec_start_argv(PANEL / "systemd" / "hostwright-web.service")
    argv[argv.index("--bind") + 1] = f"127.0.0.1:{gunicorn_port}"
    argv[argv.index("--workers") + 1] = "1"
    env = {
        "PATH": os.environ["PATH"],
        "HOSTING_ENV": "production",
        "SECRET_KEY": "deploy-test-" + "q8Zr4mV1xT0pL7sK2nB5cJ9hG3fD6wY" * 2,
        "ALLOWED_HOSTS": "panel.example.com",
        "DATABASE_URL": (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        ),
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15"),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"),
        "HOSTING_VAR_DIR": str(tmp_path / "var"),
    }
    argv[0] = str(Path(sys.executable).parent / "gunicorn")
    # And the nginx site, with a throwaway certificate and free ports
    cert, key = self_signed(tmp_path)
    site = (PANEL / "nginx" / "hostwright.conf").read_text()
    site = site.replace("127.0.0.1:8000", f"127.0.0.1:{gunicorn_port}")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    site = site.replace("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    site = "\n".join(line for line in site.splitlines() if "[::]" not in line)
    site = site.replace("/etc/letsencrypt/live/panel.example.com/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/panel.example.com/privkey.pem", str(key))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "logs").mkdir()
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/logs/error.log;\n"
        "events {}\n"
        f"http {{ access_log off; client_body_temp_path {tmp_path}/body; "
        f"proxy_temp_path {tmp_path}/proxy; include {tmp_path}/site.conf; }}\n"
    )
    check = subprocess.run(
        ["nginx", "-t", "-q", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr

    web = subprocess.Popen(argv, cwd=ROOT, env=env, stderr=subprocess.PIPE)
    proxy = subprocess.Popen(
        ["nginx", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-g", "daemon off;"]
    )
    try:
        wait_for_port(gunicorn_port, web)
        wait_for_port(https_port, proxy)
        # When a browser asks over plain HTTP, it is sent to HTTPS
        plain = urllib.request.Request(
            f"http://127.0.0.1:{http_port}/healthz", headers={"Host": "panel.example.com"}
        )
        opener = urllib.request.build_opener(NoRedirect)
        with pytest.raises(urllib.error.HTTPError) as redirect:
            opener.open(plain, timeout=10)
        assert redirect.value.code == 301
        assert redirect.value.headers["Location"] == "https://panel.example.com/healthz"
        # And over HTTPS the panel answers through nginx, with production security headers
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        req = urllib.request.Request(
            f"https://127.0.0.1:{https_port}/healthz", headers={"Host": "panel.example.com"}
        )
        with urllib.request.urlopen(req, context=ctx, timeout=10) as response:  # noqa: S310
            body = response.read().decode()
            assert response.status == 200
            assert '"status": "ok"' in body
            assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
            assert len(response.headers["X-Request-ID"]) == 32
        # And a host name that is not the panel's is refused by Django
        bad = urllib.request.Request(
            f"https://127.0.0.1:{https_port}/healthz", headers={"Host": "evil.example.net"}
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, context=ctx, timeout=10)  # noqa: S310
        assert refused.value.code == 400
    finally:
        proxy.terminate()
        web.terminate()
        proxy.wait(timeout=20)
        web.wait(timeout=20)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
