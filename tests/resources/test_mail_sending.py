"""The node's mail filter and the sites' sendmail wrapper, without Postfix: the milter protocol
as Postfix speaks it, who is taken for a hosting account, what it may send, and how the wrapper
reads a sendmail command line. (The same programs on the real node: tests/node/test_site_mail.py.)
"""

from __future__ import annotations

import importlib.util
import io
import ipaddress
import os
import socket
import sqlite3
import struct
from pathlib import Path
from types import ModuleType

import pytest

MAIL = Path(__file__).resolve().parents[2] / "deploy" / "node" / "mail"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name.replace("-", "_"), MAIL / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sending = load("mail-sending")
sendmail = load("site-sendmail")

LIMITS = {
    "shop.test": ("hwtshop", 3, 2),
    "shop-two.test": ("hwtshop", 3, 2),
    "rival.test": ("hwtrival", 50, 10),
}


def connect_packet(address: str, port: int) -> bytes:
    return b"localhost\0" + b"4" + struct.pack("!H", port) + address.encode() + b"\0"


def macros(stage: bytes, **values: str) -> bytes:
    return stage + b"".join(f"{{{k}}}\0{v}\0".encode() for k, v in values.items())


class Session:
    """A milter as one SMTP connection sees it; the account owns every local socket."""

    def __init__(self, tmp_path: Path, monkeypatch, *, uid: int | None, account: str | None):
        monkeypatch.setattr(sending, "account_of", lambda _uid: account)
        self.milter = sending.Milter(
            owner=lambda client, server: uid,
            limits=lambda: LIMITS,
            database=lambda: sending.connect(str(tmp_path / "sent.sqlite3")),
        )

    def connect(self, address: str = "127.0.0.1") -> bytes | None:
        self.milter.handle(b"D", macros(b"C", daemon_addr="127.0.0.1", daemon_port="25"))
        return self.milter.handle(b"C", connect_packet(address, 40000))

    def send(self, sender: str, header_from: str, recipients: int = 1, login: str = ""):
        """The replies to MAIL, end of headers and end of message (all three asked even after
        a refusal, which Postfix would not do: a refused message must never count)."""
        if login:
            self.milter.handle(b"D", macros(b"M", auth_authen=login))
        replies = [self.milter.handle(b"M", f"<{sender}>\0".encode())]
        for _ in range(recipients):
            self.milter.handle(b"R", b"<someone@example.net>\0")
        self.milter.handle(b"L", b"From\0" + header_from.encode() + b"\0")
        replies.append(self.milter.handle(b"N", b""))
        replies.append(self.milter.handle(b"E", b""))
        return replies


def text(reply: bytes | None) -> str:
    assert reply is not None and reply[:1] == b"y", reply
    return reply[1:].rstrip(b"\0").decode()


def test_the_socket_table_names_the_owner_of_a_loopback_connection():
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
        with client, accepted:
            local = ipaddress.ip_address("127.0.0.1")
            mine = (local, client.getsockname()[1])
            listening = (local, server.getsockname()[1])
            assert sending.socket_owner(mine, listening) == os.geteuid()
            assert sending.socket_owner(mine, None) == os.geteuid()
            # the server's end of the same connection is not the client
            assert sending.socket_owner(mine, (local, 1)) is None


def test_a_sites_mail_must_use_its_own_domains_and_counts_against_the_account(
    tmp_path, monkeypatch
):
    site = Session(tmp_path, monkeypatch, uid=1234, account="hwtshop")
    assert site.connect() == b"c"

    # another customer's domain, as envelope sender or in From:, is refused
    [mail_from] = site.send("ceo@rival.test", "ceo@rival.test")[:1]
    assert text(mail_from).startswith("550 5.7.1 the hosting account hwtshop may only send")
    assert "(shop-two.test, shop.test)" in text(mail_from)
    _, headers, _ = site.send("info@shop.test", "Boss <ceo@rival.test>")
    assert "the From: address ceo@rival.test is not one" in text(headers)
    _, headers, _ = site.send("info@shop.test", "info@shop.test, ceo@rival.test")
    assert "ceo@rival.test" in text(headers)

    # its own domains pass, each recipient counting once against the plan's 3 an hour
    assert site.send("info@shop.test", "Shop <info@shop.test>", recipients=2) == [b"c"] * 3
    assert site.send("news@shop-two.test", "news@shop-two.test") == [b"c"] * 3
    *_, over = site.send("info@shop.test", "info@shop.test")
    assert text(over).startswith(
        "554 5.7.1 Sending limit reached: the hosting account hwtshop may send 3 messages"
        " per hour and has sent 3"
    )
    db = sqlite3.connect(tmp_path / "sent.sqlite3")
    assert db.execute("SELECT SUM(count) FROM sent WHERE account = 'hwtshop'").fetchone() == (3,)
    assert db.execute("SELECT COUNT(*) FROM refused").fetchone() == (1,)


def test_an_account_without_a_mail_domain_here_cannot_send(tmp_path, monkeypatch):
    site = Session(tmp_path, monkeypatch, uid=1234, account="hwtnomail")
    site.connect()
    [reply] = site.send("info@shop.test", "info@shop.test")[:1]
    assert "has no mail domain on this server" in text(reply)


def test_mail_from_elsewhere_or_from_system_users_is_not_judged(tmp_path, monkeypatch):
    world = Session(tmp_path, monkeypatch, uid=None, account=None)
    assert world.connect("192.0.2.7") == b"c"
    assert world.milter.handle(b"M", b"<ceo@rival.test>\0") == b"a"
    system = Session(tmp_path, monkeypatch, uid=0, account=None)
    assert system.connect() == b"c"
    assert system.milter.handle(b"M", b"<root@node.test>\0") == b"a"


def test_a_loopback_client_that_cannot_be_identified_is_told_to_retry(tmp_path, monkeypatch):
    unknown = Session(tmp_path, monkeypatch, uid=None, account=None)
    assert text(unknown.connect()).startswith("421 4.7.1 the sending process cannot be")


def test_a_mailbox_may_put_only_its_accounts_domains_in_from(tmp_path, monkeypatch):
    submission = Session(tmp_path, monkeypatch, uid=None, account=None)
    submission.connect("192.0.2.7")
    ok = submission.send("info@shop.test", "news@shop-two.test", login="info@shop.test")
    assert ok == [b"c"] * 3
    _, headers, _ = submission.send("info@shop.test", "ceo@rival.test", login="info@shop.test")
    assert text(headers) == (
        "550 5.7.1 info@shop.test may only send as addresses of its own domains;"
        " the From: address ceo@rival.test is not one"
    )
    # the message sent counted against the mailbox and its account, the refused one did not
    db = sqlite3.connect(tmp_path / "sent.sqlite3")
    assert db.execute("SELECT mailbox, account, count FROM sent").fetchall() == [
        ("info@shop.test", "hwtshop", 1)
    ]


def test_the_milter_speaks_postfixs_framing(tmp_path, monkeypatch):
    session = Session(tmp_path, monkeypatch, uid=1234, account="hwtshop")

    def packet(command: bytes, data: bytes = b"") -> bytes:
        return struct.pack("!I", len(data) + 1) + command + data

    stream = io.BytesIO(
        packet(b"O", struct.pack("!III", 6, 0x1FF, 0x1FFFFF))
        + packet(b"D", macros(b"C", daemon_addr="127.0.0.1", daemon_port="25"))
        + packet(b"C", connect_packet("127.0.0.1", 40000))
        + packet(b"M", b"<ceo@rival.test>\0")
        + packet(b"A")
        + packet(b"Q")
        + packet(b"C", connect_packet("127.0.0.1", 40001))  # after QUIT: never read
    )
    out = io.BytesIO()
    sending.serve_milter(stream, out, session.milter)
    replies, data = [], out.getvalue()
    while data:
        (size,) = struct.unpack("!I", data[:4])
        replies.append(data[4 : 4 + size])
        data = data[4 + size :]
    # options: version 6, no actions, only the steps it skips that Postfix offered
    assert replies[0] == b"O" + struct.pack("!III", 6, 0, 0x312)
    assert replies[1] == b"c"
    assert text(replies[2]).startswith("550 5.7.1 the hosting account hwtshop")
    assert len(replies) == 3  # macros and abort get no reply; quit ends the stream


@pytest.mark.parametrize(
    "argv, sender, recipients",
    [
        (["-t", "-i"], "shop@shop.test", ["a@x.test", "b@y.test", "c@z.test"]),
        (["-t", "-i", "-fnews@shop.test"], "news@shop.test", ["a@x.test", "b@y.test", "c@z.test"]),
        (["-ti", "-f", "<news@shop.test>"], "news@shop.test", ["a@x.test", "b@y.test", "c@z.test"]),
        (["-oi", "-F", "Shop", "d@w.test"], "shop@shop.test", ["d@w.test"]),
        (["-i", "--", "-odd@w.test"], "shop@shop.test", ["-odd@w.test"]),
    ],
)
def test_the_wrapper_reads_sendmail_command_lines(argv, sender, recipients):
    message = (
        b"To: a@x.test, B <b@y.test>\nBcc: c@z.test\nFrom: Shop <shop@shop.test>\n"
        b"Subject: hello\n\nline one\n.\nafter the dot\n"
    )
    got_sender, got_recipients, data = sendmail.envelope(argv, message)
    assert (got_sender, got_recipients) == (sender, recipients)
    assert b"Bcc" not in data if "-t" in argv or "-ti" in argv else b"Bcc: c@z.test" in data
    assert data.startswith(b"To: a@x.test, B <b@y.test>\r\n")
    assert b"\r\n\r\nline one\r\n.\r\nafter the dot\r\n" in data  # -i: a dot is a line


def test_without_i_a_lone_dot_ends_the_message():
    _, _, data = sendmail.envelope(["-t"], b"To: a@x.test\nFrom: s@shop.test\n\nkept\n.\ncut\n")
    assert data.endswith(b"\r\n\r\nkept\r\n")


@pytest.mark.parametrize(
    "gecos, account",
    [
        ("hostwright service 42", "hwtshop"),
        ("hostwright service 42,room 1,,", "hwtshop"),  # what chfn may add
        ("hostwright service", None),
        ("hostwright service 4x", None),
        ("Debian-exim,,,", None),
        ("", None),
    ],
)
def test_an_account_is_a_user_with_the_agents_tag(monkeypatch, gecos, account):
    entry = type("Entry", (), {"pw_name": "hwtshop", "pw_gecos": gecos})
    monkeypatch.setattr(sending.pwd, "getpwuid", lambda uid: entry)
    assert sending.account_of(1234) == account
