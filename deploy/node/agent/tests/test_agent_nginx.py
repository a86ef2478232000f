"""hwagent._nginx: one file checked on its own, one reload, and what the master refuses.

Runs a private nginx (its own prefix, a free loopback port, its own lock directory) with the
node's http-level settings taken from the bootstrap (30-nginx.sh), so nothing here touches the
node's own web server.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hwagent import _nginx, sites, system
from hwagent.errors import AgentError

PART = Path(__file__).resolve().parents[2] / "parts" / "30-nginx.sh"


def http_settings() -> str:
    """The http-level settings file exactly as the bootstrap writes it."""
    found = re.search(
        r"hostwright-http\.conf 0644 >/dev/null <<'CONF'\n(.*?)\nCONF\n", PART.read_text(), re.S
    )
    assert found is not None
    return found.group(1) + "\n"


@dataclass
class Nginx:
    root: Path
    port: int

    def site(self, name: str, domain: str) -> str:
        text = sites.site_config(service=1, user=name, domain=domain, ip="")
        return text.replace("listen 80;", f"listen 127.0.0.1:{self.port};").replace(
            f"/home/{name}/public_html", str(self.root / "www")
        )

    def path(self, name: str) -> str:
        return str(self.root / "sites" / f"{name}.conf")

    def get(self, host: str, path: str = "/") -> int:
        return int(self.curl(host, path, "-o", "/dev/null", "-w", "%{http_code}") or 0)

    def headers(self, host: str) -> str:
        return self.curl(host, "/", "-o", "/dev/null", "-D", "-")

    def curl(self, host: str, path: str, *options: str) -> str:
        done = subprocess.run(
            ["curl", "-s", *options, "-H", f"Host: {host}", f"http://127.0.0.1:{self.port}{path}"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return done.stdout

    def master(self) -> int:
        return int((self.root / "nginx.pid").read_text())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def nginx(monkeypatch: pytest.MonkeyPatch) -> Iterator[Nginx]:
    if subprocess.run(["sh", "-c", "command -v nginx"], capture_output=True).returncode:
        pytest.skip("nginx is not installed here")
    # Under /var/lib, not /tmp: the agent makes folders only on a path no one else can write.
    root = Path(tempfile.mkdtemp(prefix="hw-nginx-test-", dir="/var/lib"))
    for folder in ("conf.d", "sites", "logs", "www/.git", "locks"):
        (root / folder).mkdir(parents=True)
    (root / "www" / "index.html").write_text("welcome\n")
    (root / "www" / ".git" / "config").write_text("secret\n")
    (root / "www" / ".well-known").mkdir()
    (root / "www" / ".well-known" / "security.txt").write_text("contact\n")
    (root / "fastcgi_params").write_text(Path("/etc/nginx/fastcgi_params").read_text())
    (root / "conf.d" / "hostwright-http.conf").write_text(
        http_settings().replace("/etc/nginx/", f"{root}/")
    )
    port = free_port()
    (root / "nginx.conf").write_text(
        # Its workers read the test's private folders.
        f"user root root;\npid {root}/nginx.pid;\nerror_log {root}/logs/error.log;\n"
        "worker_processes 2;\n"
        f"events {{}}\nhttp {{\naccess_log off;\nserver_names_hash_bucket_size 256;\n"
        f"server {{ listen 127.0.0.1:{port}; return 404; }}\n"
        f"include {root}/conf.d/*.conf;\ninclude {root}/sites/*.conf;\n}}\n"
    )
    monkeypatch.setattr(_nginx, "PID_FILE", f"{root}/nginx.pid")
    monkeypatch.setattr(_nginx, "ERROR_LOG", f"{root}/logs/error.log")
    monkeypatch.setattr(_nginx, "CONF_DIR", str(root))
    monkeypatch.setattr(_nginx, "HTTP_SETTINGS", f"{root}/conf.d/hostwright-http.conf")
    monkeypatch.setattr(system, "LOCK_DIR", f"{root}/locks")
    monkeypatch.setattr(sites, "SITES_DIR", f"{root}/sites")
    monkeypatch.setattr(sites, "TLS_DIR", f"{root}/tls")
    subprocess.run(["nginx", "-c", f"{root}/nginx.conf"], check=True, capture_output=True)
    server = Nginx(root=root, port=port)
    try:
        yield server
    finally:
        master = server.master()
        subprocess.run(["kill", "-QUIT", str(master)], check=False)
        for _ in range(100):
            if not Path(f"/proc/{master}").exists():
                break
            time.sleep(0.05)
        shutil.rmtree(root, ignore_errors=True)


def test_a_server_block_is_served_once_swap_returns(nginx: Nginx) -> None:
    # Given a node serving nothing on that name
    assert nginx.get("one.example") == 404
    # When the block is swapped in
    changed = _nginx.swap(nginx.path("one"), nginx.site("one", "one.example"))
    # Then it answers at once, for the domain and www., refusing hidden files only
    assert changed
    assert nginx.get("one.example") == 200
    assert nginx.get("www.one.example") == 200
    assert nginx.get("one.example", "/.git/config") == 403
    assert nginx.get("one.example", "/.well-known/security.txt") == 200
    # and the same content again changes and reloads nothing
    master_workers = sorted(_nginx._confswap.children(nginx.master(), _nginx.WORKER))
    assert not _nginx.swap(nginx.path("one"), nginx.site("one", "one.example"))
    assert sorted(_nginx._confswap.children(nginx.master(), _nginx.WORKER)) == master_workers


def test_a_file_refused_on_its_own_is_taken_back_before_any_reload(nginx: Nginx) -> None:
    _nginx.swap(nginx.path("one"), nginx.site("one", "one.example"))
    workers = sorted(_nginx._confswap.children(nginx.master(), _nginx.WORKER))
    bad = nginx.site("two", "two.example").replace("index index.php", "indexx index.php")
    with pytest.raises(AgentError) as err:
        _nginx.swap(nginx.path("two"), bad)
    assert err.value.code == "invalid"
    assert "indexx" in err.value.detail
    assert not Path(nginx.path("two")).exists()
    # The running server was not even asked to reload.
    assert sorted(_nginx._confswap.children(nginx.master(), _nginx.WORKER)) == workers
    assert nginx.get("one.example") == 200


def test_what_only_the_whole_configuration_refuses_is_put_back(nginx: Nginx) -> None:
    # Given a block that is the default server on the port, and a site
    default = f"server {{ listen 127.0.0.1:{nginx.port} default_server; return 204; }}\n"
    _nginx.swap(nginx.path("default"), default)
    _nginx.swap(nginx.path("one"), nginx.site("one", "one.example"))
    old = nginx.site("one", "one.example")
    # When a change to the site makes it a second default server (fine on its own)
    conflict = old.replace(f"127.0.0.1:{nginx.port};", f"127.0.0.1:{nginx.port} default_server;")
    with pytest.raises(AgentError) as err:
        _nginx.swap(nginx.path("one"), conflict)
    # Then the master's refusal is the error, and the previous file is back and served
    assert err.value.code == "invalid"
    assert "duplicate default server" in err.value.detail
    assert Path(nginx.path("one")).read_text() == old
    assert nginx.get("one.example") == 200
    assert nginx.get("other.example") == 204


def test_removing_a_block_stops_serving_it(nginx: Nginx) -> None:
    _nginx.swap(nginx.path("one"), nginx.site("one", "one.example"))
    assert _nginx.swap(nginx.path("one"), None)
    assert nginx.get("one.example") == 404
    assert not _nginx.swap(nginx.path("one"), None)


def test_a_server_part_is_checked_inside_a_server(nginx: Nginx) -> None:
    part = str(nginx.root / "sites" / "part.inc")
    assert _nginx.swap(part, "# a part\nadd_header X-Part yes;\n")
    with pytest.raises(AgentError) as err:
        _nginx.swap(part, "server_tokens maybe;\n")
    assert err.value.code == "invalid"
    assert Path(part).read_text() == "# a part\nadd_header X-Part yes;\n"


def test_a_block_rewritten_moves_its_https_part_into_the_accounts_folder(nginx: Nginx) -> None:
    # Given a site whose block includes its HTTPS part from the shared folder by a pattern
    # (the layout before: every such pattern read the whole folder at every reload)
    Path(sites.TLS_DIR).mkdir()
    part = "# managed by Hostwright: HTTPS for one.example\nadd_header X-Part yes;\n"
    Path(sites.legacy_https_path("one")).write_text(part)
    old = nginx.site("one", "one.example").replace(
        f"include {sites.https_dir('one')}/*.conf;", sites.legacy_include("one")
    )
    assert _nginx.swap(nginx.path("one"), old)
    assert "X-Part: yes" in nginx.headers("one.example")
    # When the block is written again (the site's next change)
    assert sites.swap_site("one", nginx.site("one", "one.example"))
    # Then the part lives in the account's folder, included without reading anyone else's
    assert Path(sites.https_path("one")).read_text() == part
    assert not Path(sites.legacy_https_path("one")).exists()
    assert "X-Part: yes" in nginx.headers("one.example")


def test_a_refused_block_takes_its_https_part_move_back_too(nginx: Nginx) -> None:
    Path(sites.TLS_DIR).mkdir()
    part = "add_header X-Part yes;\n"
    Path(sites.legacy_https_path("one")).write_text(part)
    bad = nginx.site("one", "one.example").replace("index index.php", "indexx index.php")
    with pytest.raises(AgentError):
        sites.swap_site("one", bad)
    assert Path(sites.legacy_https_path("one")).read_text() == part
    assert not Path(sites.https_path("one")).exists()
    assert not Path(nginx.path("one")).exists()


def test_a_site_has_https_in_either_layout(nginx: Nginx) -> None:
    # (a move carries HTTPS along only when the old node's site has it)
    Path(sites.TLS_DIR).mkdir()
    assert not sites.has_https("alice")
    Path(sites.https_dir("alice")).mkdir()
    Path(sites.https_path("alice")).write_text("listen 443 ssl;\n")
    Path(sites.legacy_https_path("bob")).write_text("listen 443 ssl;\n")
    assert sites.has_https("alice") and sites.has_https("bob")
    assert not sites.has_https("carol")
