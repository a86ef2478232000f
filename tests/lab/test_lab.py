"""The lab itself, and a hosting account built by the engine on a Debian 12 node with systemd."""

from __future__ import annotations

import http.client
import re
import tomllib

import dns.resolver
import pytest

from provisioning import nodes, services
from provisioning.models import Operation, Service
from tests.factories import CustomerFactory, PlanFactory
from tests.lab.lab import ROOT, Lab, lab_addresses
from tests.node.harness import unique_domain, wait_for_operation


def lab_http_get(address: str, host: str, path: str = "/") -> tuple[int, str]:
    conn = http.client.HTTPConnection(address, 80, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


def on_node(lab: Lab, name: str, command: str) -> str:
    node = next(n for n in lab.nodes if n.name == name)
    result = lab.ssh(node, command, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout.decode()


def test_the_tests_may_reach_exactly_the_lab_addresses():
    # given pytest's socket guard
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]
    allowed = re.search(r"--allow-hosts=(\S+)", options["ini_options"]["addopts"])
    assert allowed is not None
    hosts = set(allowed.group(1).strip('"').split(","))
    # then loopback and the lab's node addresses are allowed, and nothing else
    assert hosts == {"127.0.0.1", "::1", "localhost", *lab_addresses()}


@pytest.mark.lab
def test_lab_nodes_boot_systemd_with_their_own_identity(lab, lab_nodes):
    # given the lab's three nodes, prepared by the node bootstrap over SSH
    assert len(lab.nodes) == 3
    machine_ids = set()
    for node in lab.nodes:
        # then each runs systemd as PID 1 on cgroup v2, with nothing failed
        state = on_node(lab, node.name, "systemctl is-system-running --wait; true").strip()
        assert state == "running", on_node(lab, node.name, "systemctl --failed --no-legend")
        assert on_node(lab, node.name, "ps -o comm= -p 1").strip() == "systemd"
        assert on_node(lab, node.name, "stat -fc %T /sys/fs/cgroup").strip() == "cgroup2fs"
        for unit in ("nginx", "php8.2-fpm", "mariadb", "pdns", "postfix", "dovecot", "ssh"):
            assert on_node(lab, node.name, f"systemctl is-active {unit}").strip() == "active"
        machine_ids.add(on_node(lab, node.name, "cat /etc/machine-id").strip())
    # and each has its own machine-id and host key, pinned by node_add
    assert len(machine_ids) == 3
    assert len({row.host_key for row in lab_nodes}) == 3
    # and the panel finds every prerequisite on every node
    for row in lab_nodes:
        report = nodes.node_check_run(node_id=row.pk)
        assert report["ok"], report


@pytest.mark.lab
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_account_built_by_the_engine_on_a_lab_node(worker, lab, lab_nodes):
    # given a customer ordering a plan, and the lab's nodes as the only ones
    customer = CustomerFactory.create(name="Lana Lab")
    plan = PlanFactory.create(php_workers=2, memory_mb=256, cpu_percent=50, processes=40)
    domain = unique_domain("lana-lab")

    # when the order is placed and the worker runs the create operation
    service = services.service_order(customer=customer, plan=plan, domain=domain)
    create = wait_for_operation(service.operations.get(kind=Operation.Kind.CREATE), timeout=300)

    # then the account is active on one of the lab nodes
    assert create.state == Operation.State.COMPLETED, f"{create.reason} {create.error}"
    service = Service.objects.select_related("node", "ip").get(pk=service.pk)
    assert service.state == Service.State.ACTIVE
    node = service.node
    assert node is not None and node.name in {n.name for n in lab.nodes}
    user = service.username
    # and its site answers through that node's nginx, with PHP running as the account
    status, body = lab_http_get(node.address, domain)
    assert status == 200 and domain in body
    on_node(
        lab,
        node.name,
        f"install -o {user} -g {user} -m 0644 /dev/stdin /home/{user}/public_html/who.php "
        "<<'PHP'\n<?php echo posix_getpwuid(posix_geteuid())['name'];\nPHP",
    )
    assert lab_http_get(node.address, domain, "/who.php") == (200, user)
    # and the other nodes do not serve it
    for other in lab.nodes:
        if other.name != node.name:
            assert lab_http_get(other.address, domain)[0] == 404
    # and the node's nameserver answers the zone with the account's address
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [node.address]
    answer = resolver.resolve(domain, "A")
    assert [r.address for r in answer] == [service.ip.address if service.ip else node.address]
    # and the account's database lives in the node's MariaDB, reachable as the account
    query = f"cd / && runuser -u {user} -- mysql -N -B -e 'SELECT DATABASE()'"
    assert on_node(lab, node.name, query).strip() == f"{user}_main"
    # and the account's systemd slice holds the plan's limits (as configured: this machine keeps
    # the cgroup controllers, so the lab can show the configuration, not its enforcement)
    uid = on_node(lab, node.name, f"id -u {user}").strip()
    shown = on_node(
        lab,
        node.name,
        f"systemctl show -p CPUQuotaPerSecUSec,MemoryHigh,MemoryMax,TasksMax user-{uid}.slice",
    )
    assert dict(line.split("=", 1) for line in shown.split()) == {
        "CPUQuotaPerSecUSec": "500ms",
        "MemoryHigh": str(256 * 2**20 * 9 // 10),
        "MemoryMax": str(256 * 2**20),
        "TasksMax": "40",
    }
