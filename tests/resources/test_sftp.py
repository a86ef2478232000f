"""SFTP inputs: public keys and password hashes are checked before any SSH."""

from __future__ import annotations

import bcrypt
import paramiko
import pytest

from provisioning.errors import ProvisioningRefused
from provisioning.resources import sftp


def test_a_real_public_key_is_accepted():
    rsa = paramiko.RSAKey.generate(2048)
    line = f"{rsa.get_name()} {rsa.get_base64()} olivia@laptop"
    assert sftp.validate_public_key(line + "\n") == line


@pytest.mark.parametrize(
    "line",
    [
        "",
        "ssh-ed25519",
        "ssh-ed25519 AAAA$(reboot)",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIBy9 x",  # an ed25519 blob labelled rsa
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI comment; rm -rf /",
        'command="/bin/sh" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA',
    ],
)
def test_bad_keys_are_refused(line):
    with pytest.raises(ProvisioningRefused):
        sftp.validate_public_key(line)


def test_password_is_hashed_and_the_hash_is_a_secret_of_the_action():
    from provisioning import ssh

    password_hash = sftp.hash_password("sftp-password-123")
    assert "sftp-password-123" not in password_hash
    assert bcrypt.checkpw(b"sftp-password-123", password_hash.encode())
    act = ssh.action(
        "sftp.enable", user="alice", password_hash=password_hash, secret=("password_hash",)
    )
    assert password_hash not in act.display() and "***" in act.display()


def test_short_password_is_refused():
    with pytest.raises(ProvisioningRefused):
        sftp.hash_password("short")
