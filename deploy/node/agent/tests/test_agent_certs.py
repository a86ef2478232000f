"""cert.* actions: validation, the ACME challenge files in root's webroot, certificates."""

from __future__ import annotations

import os
import secrets
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Decoy, plant_hardlink, plant_symlink
from hwagent import certs
from hwagent.errors import AgentError

TOKEN = "A" * 43
KEYAUTH = "A" * 43 + "." + "B" * 43
PEM_CERT = "-----BEGIN CERTIFICATE-----\n" + "QUJD" * 20 + "\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\n" + "QUJD" * 20 + "\n-----END PRIVATE KEY-----\n"

BAD: list[tuple[Callable[..., Any], dict[str, Any]]] = [
    (certs.challenge_put, {"token": "../../etc/passwd", "key_authorization": KEYAUTH}),
    (certs.challenge_put, {"token": "short", "key_authorization": KEYAUTH}),
    (certs.challenge_put, {"token": TOKEN, "key_authorization": "x\ny"}),
    (certs.challenge_put, {"token": TOKEN, "key_authorization": "<?php system($_GET[1]);"}),
    (certs.challenge_remove, {"token": "a/b" * 10}),
    (certs.install, {"domain": "bad domain", "fullchain_pem": PEM_CERT, "key_pem": PEM_KEY}),
    (certs.install, {"domain": "ok.example", "fullchain_pem": "not pem", "key_pem": PEM_KEY}),
    (certs.install, {"domain": "ok.example", "fullchain_pem": PEM_KEY, "key_pem": PEM_KEY}),
    (certs.install, {"domain": "ok.example", "fullchain_pem": PEM_CERT, "key_pem": PEM_CERT}),
    (certs.install, {"domain": "ok.example", "fullchain_pem": PEM_CERT + "x", "key_pem": PEM_KEY}),
    (certs.install, {"domain": "ok.example", "fullchain_pem": PEM_CERT, "key_pem": "'; rm -rf /"}),
    (certs.remove, {"domain": "../../etc"}),
    (certs.inventory, {"domains": ["x"]}),
    (certs.https_ensure, {"account": "../x", "domain": "ok.example"}),
    (certs.https_ensure, {"account": "alice", "domain": "ok.example", "listen_ip": "1.2.3"}),
    (certs.https_ensure, {"account": "alice", "domain": "ok..example"}),
    (certs.https_remove, {"account": "Alice"}),
]  # fmt: skip


@pytest.mark.parametrize(("func", "args"), BAD)
def test_every_cert_action_refuses_bad_arguments_before_acting(
    func: Callable[..., Any], args: dict[str, Any]
) -> None:
    with pytest.raises(AgentError) as err:
        func(**args)
    assert err.value.code == "invalid"


def http_get(path: str) -> str:
    done = subprocess.run(
        ["curl", "-s", "-H", "Host: any.example", f"http://127.0.0.1{path}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout


@pytest.fixture
def token() -> Iterator[str]:
    value = secrets.token_urlsafe(32)
    yield value
    certs.challenge_remove(token=value)


@pytest.mark.node
@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_a_link_at_the_challenge_path_is_replaced_not_written_through(
    token: str, decoy: Decoy, link: str
) -> None:
    # given a link at the challenge file's path to a file of root's
    before = decoy.state()
    path = Path(certs.CHALLENGE_DIR) / token
    if link == "symlink":
        plant_symlink(path, decoy.file)
    else:
        plant_hardlink(path, decoy.file)
    answer = f"{token}.{'C' * 43}"

    # when the challenge answer is published
    assert certs.challenge_put(token=token, key_authorization=answer)["changed"] is True

    # then the decoy is unchanged and the challenge file is a plain file of root's
    assert decoy.state() == before
    st = os.lstat(path)
    assert st.st_uid == 0 and st.st_nlink == 1 and (st.st_mode & 0o777) == 0o644
    assert path.read_text() == answer
    # and removing it removes the entry only
    assert certs.challenge_remove(token=token)["changed"] is True
    assert decoy.state() == before and not path.exists()


@pytest.mark.node
def test_the_challenge_is_served_by_nginx_for_any_site(token: str) -> None:
    answer = f"{token}.{'D' * 43}"
    certs.challenge_put(token=token, key_authorization=answer)
    assert certs.challenge_put(token=token, key_authorization=answer)["changed"] is False
    body = http_get(f"/.well-known/acme-challenge/{token}")
    if "<html" in body and "nginx" in body:
        pytest.skip("nginx does not serve a default site on this node")
    assert body == answer


@pytest.mark.node
def test_install_says_whether_the_domain_had_a_certificate(decoy: Decoy) -> None:
    domain = f"ag-{uuid.uuid4().hex[:8]}.test"
    try:
        first = certs.install(domain=domain, fullchain_pem=PEM_CERT, key_pem=PEM_KEY)
        again = certs.install(domain=domain, fullchain_pem=PEM_CERT, key_pem=PEM_KEY)
        assert (first["created"], again["created"], again["changed"]) == (True, False, False)
        folder = Path(certs.CERTS_DIR) / domain
        assert (folder / "privkey.pem").read_text() == PEM_KEY
        assert all((os.lstat(folder / f).st_mode & 0o777) == 0o600 for f in os.listdir(folder))
        assert certs.inventory(domains=[domain, "other.example"])["certificates"] == [domain]
        # a link planted in the certificate folder is replaced, never written through
        before = decoy.state()
        plant_symlink(folder / "fullchain.pem", decoy.file)
        certs.install(domain=domain, fullchain_pem=PEM_CERT, key_pem=PEM_KEY)
        assert decoy.state() == before
        assert not (folder / "fullchain.pem").is_symlink()
    finally:
        assert certs.remove(domain=domain)["changed"] is True
    assert certs.remove(domain=domain)["changed"] is False


@pytest.mark.node
def test_https_for_a_domain_without_a_certificate_is_refused() -> None:
    with pytest.raises(AgentError) as err:
        certs.https_ensure(account="nobodyhere", domain=f"ag-{uuid.uuid4().hex[:8]}.test")
    assert err.value.code == "not_found"
    assert not Path(certs.TLS_DIR, "nobodyhere.conf").exists()
