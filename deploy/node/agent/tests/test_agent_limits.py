"""The account's limits in the node agent: the slice drop-in it writes on systemd nodes and
what it refuses (no node needed)."""

from __future__ import annotations

from typing import Any

from hwagent import protocol
from hwagent.limits import SystemdSlices
from hwagent.pools import TEMPLATE_TEXT, pool_config
from hwagent.registry import load_all

load_all()


def refused(name: str, args: dict[str, Any]) -> dict[str, Any]:
    answer = protocol.handle(
        {"id": "t", "actions": [{"action": name, "args": args}]}, tier="worker"
    )
    (result,) = answer["results"]
    assert result["ok"] is False, (name, args, result)
    return dict(result["error"])


def test_the_slice_drop_in_holds_the_plans_limits() -> None:
    text = SystemdSlices.text(
        "hwtgood1", cpu_quota_us=50_000, memory_bytes=256 * 2**20, pids=40, io_weight=300
    )
    assert "CPUQuota=50%\n" in text
    assert f"MemoryHigh={256 * 2**20 * 9 // 10}\nMemoryMax={256 * 2**20}\n" in text
    assert "TasksMax=40\nIOWeight=300\n" in text
    assert "IOAccounting=yes" in text


def test_limits_refuse_an_io_weight_out_of_range() -> None:
    for bad in (0, 10_001):
        args = {"user": "hwtgood1", "cpu_percent": 50, "memory_mb": 256, "processes": 40}
        assert refused("limits.set", {**args, "io_weight": bad})["code"] == "invalid"


def test_the_accounts_own_php_master_has_one_pool_and_no_cgroup_joining() -> None:
    text = pool_config(user="hwtgood1", workers=2, memory_mb=256, own_master=True)
    assert text.count("[global]") == 1 and text.count("[hw-hwtgood1]") == 1
    assert "listen = /run/php/hw-hwtgood1.sock" in text
    assert "cgroup-join" not in text and "/sys/fs/cgroup" not in text
    assert "php_admin_value[open_basedir] = /home/hwtgood1/\n" in text
    # and the shared master's pool keeps joining the account's cgroups on nodes without systemd
    shared = pool_config(user="hwtgood1", workers=2, memory_mb=256)
    assert "[global]" not in shared and "cgroup-join.php" in shared
    # and the template unit reloads gracefully and reads the account's configuration
    assert "ExecReload=/bin/kill -USR2 $MAINPID" in TEMPLATE_TEXT
    assert "--fpm-config /etc/hostwright/php-fpm/%i.conf" in TEMPLATE_TEXT
