"""The registry of operation kinds: one place declares each kind's whole step list."""

from __future__ import annotations

import pytest

from provisioning import kinds
from provisioning.steps.base import KINDS, OperationKind, get_kind, register_kind


def test_every_kind_is_declared_in_the_registry() -> None:
    get_kind("create")
    declared = {k.name for k in kinds.ALL}
    assert declared <= set(KINDS)
    assert all(isinstance(k.steps, tuple) for k in kinds.ALL)


def test_create_runs_the_account_then_dns_and_mail_before_the_site() -> None:
    names = [s.name for s in get_kind("create").steps]
    assert names == [
        "validate",
        "linux_user",
        "limits",
        "php_pool",
        "database",
        "dns_zone",
        "mail_domain",
        "dkim_key",
        "nginx_site",
        "verify_dns",
        "measure_disk",
    ]


def test_a_kind_cannot_be_declared_again() -> None:
    get_kind("create")
    with pytest.raises(ValueError, match="declared twice"):
        register_kind(OperationKind(name="create", steps=get_kind("create").steps))
