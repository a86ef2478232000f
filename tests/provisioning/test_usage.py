"""Usage measured on the real node: disk, memory and this month's traffic of each account."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess

import pytest

from panel.selectors import service_usage
from provisioning import services
from provisioning.models import Operation, Service
from provisioning.steps.hosting import docroot
from provisioning.usage import (
    cpu_percent,
    mail_sending,
    nginx_month,
    parse_mail_sending,
    parse_usage,
    usage_collect_node,
)
from tests.factories import CustomerFactory, PlanFactory
from tests.node.harness import http_get, unique_domain, wait_for_operation

MiB = 2**20


def test_the_nodes_answer_is_read_account_by_account_and_unknowns_stay_unknown() -> None:
    found = parse_usage(
        {
            "hwa1": {
                "disk_mb": 12,
                "memory_bytes": 52428800,
                "traffic_bytes": 1048576,
                "cpu_ns": 7000000000,
            },
            "hwa2": {"disk_mb": None, "memory_bytes": None, "traffic_bytes": 0, "cpu_ns": None},
            "hwa3": {"disk_mb": 1, "memory_bytes": 2, "traffic_bytes": "many", "cpu_ns": 5},
            "hwa4": "garbage",
        }
    )
    assert set(found) == {"hwa1", "hwa2"}
    assert (found["hwa1"].cpu_ns, found["hwa2"].cpu_ns) == (7_000_000_000, None)
    assert (found["hwa1"].disk_mb, found["hwa1"].memory_mb, found["hwa1"].traffic_bytes) == (
        12,
        50,
        MiB,
    )
    assert (found["hwa2"].disk_mb, found["hwa2"].memory_mb, found["hwa2"].traffic_bytes) == (
        None,
        None,
        0,
    )


def test_the_mail_report_keeps_only_entries_that_read_as_a_report() -> None:
    found = parse_mail_sending(
        [
            {"account": "hwa1", "domains": ["a.example"], "limit": 500, "sent": 42, "refused": 0},
            {"account": "hwa2", "limit": 3, "sent": 3, "refused": 2, "last_refused": 1796169600},
            {"account": "hwa3", "sent": "lots"},
            {"sent": 1},
            "hwa4 1 2 3",
            None,
        ]
    )
    assert set(found) == {"hwa1", "hwa2"}
    assert (found["hwa1"].sent_last_hour, found["hwa1"].refused) == (42, 0)
    assert found["hwa1"].last_refused is None
    assert found["hwa2"].refused == 2
    assert found["hwa2"].last_refused == dt.datetime(2026, 12, 2, tzinfo=dt.UTC)
    # an answer that is not a list at all reads as no report
    assert parse_mail_sending({"hwa1": {"sent": 1}}) == {}
    assert parse_mail_sending(None) == {}


def test_cpu_use_is_the_counters_growth_over_the_time_between_readings() -> None:
    # 3 s of CPU time in 10 s is 30 % of one core; 2 cores busy for 10 s is 200 %
    assert cpu_percent(before=1_000_000_000, after=4_000_000_000, seconds=10) == 30
    assert cpu_percent(before=0, after=20_000_000_000, seconds=10) == 200
    # unknown: no reading before, a counter that went back (cgroup made anew), no time between
    assert cpu_percent(before=None, after=5, seconds=10) is None
    assert cpu_percent(before=9, after=5, seconds=10) is None
    assert cpu_percent(before=1, after=5, seconds=0) is None


def test_the_month_is_written_as_nginx_writes_it() -> None:
    assert nginx_month(dt.datetime(2026, 12, 1, tzinfo=dt.UTC)) == "Dec/2026"
    assert nginx_month(dt.datetime(2027, 5, 31, tzinfo=dt.UTC)) == "May/2027"


@pytest.mark.node
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("services_terminated_after")
def test_disk_memory_and_traffic_are_measured_and_shown_against_the_plan(
    worker, hosting_node
) -> None:
    # Given a live account whose site holds a 3 MiB file
    domain = unique_domain("usage")
    plan = PlanFactory.create(disk_mb=1000, bandwidth_gb=10, memory_mb=256)
    service = services.service_order(customer=CustomerFactory.create(), plan=plan, domain=domain)
    create = wait_for_operation(service.operations.get(kind=Operation.Kind.CREATE))
    assert create.state == Operation.State.COMPLETED, create.reason
    service = Service.objects.get(pk=service.pk)
    user = service.username
    big = os.path.join(docroot(user), "big.bin")
    with open(big, "wb") as f:
        f.write(os.urandom(3 * MiB))
    shutil.chown(big, user, user)
    # And visitors downloaded it twice this month
    for _ in range(2):
        status, _body = http_get(domain, "/big.bin")
        assert status == 200

    # When the node's usage is collected
    measured = usage_collect_node(node_id=hosting_node.pk)

    # Then the account's figures are stored
    service = Service.objects.get(pk=service.pk)
    assert measured >= 1 and service.usage_measured_at is not None
    assert service.disk_used_mb is not None and service.disk_used_mb >= 3
    assert service.bandwidth_used_bytes is not None
    assert service.bandwidth_used_bytes >= 6 * MiB
    # the node has memory cgroups: the account's one is read (nothing runs in it yet: 0 is fine)
    assert service.memory_used_mb is not None
    # the CPU counter is read, but one reading gives no average yet
    assert service.cpu_time_ns is not None and service.cpu_used_percent is None
    # no mail was sent yet, and the node agent did give its sending report
    assert service.mail_sent_last_hour == 0 and service.mail_refused_count == 0
    assert mail_sending(hosting_node) is not None

    # When the account keeps a CPU busy for a while (inside its cgroups, as its PHP does) and
    # usage is collected again
    subprocess.run(
        ["runuser", "-u", user, "--", "sh", "-c",
         f'for c in cpu cpuacct memory pids; do echo $$ > "/sys/fs/cgroup/$c/hostwright/{user}'
         '/cgroup.procs"; done; timeout 1.5 sh -c "while :; do :; done"; exit 0'],
        check=True, timeout=30,
    )  # fmt: skip
    usage_collect_node(node_id=hosting_node.pk)
    # Then its average CPU use since the first reading is known, and within its plan's share
    service = Service.objects.get(pk=service.pk)
    assert service.cpu_used_percent is not None
    assert 5 <= service.cpu_used_percent <= plan.cpu_percent + 10
    # And the panel shows them against the plan's limits
    usage = {u.label: u for u in service_usage(service=service)}
    assert usage["Disk"].used == service.disk_used_mb and usage["Disk"].limit == 1000
    traffic, sent = usage["Traffic this month"], service.bandwidth_used_bytes
    assert sent is not None
    assert traffic.used == round(sent / 2**30, 2) and traffic.limit == 10
    assert traffic.used_text == f"{sent / 2**20:.0f} MB"
    assert usage["Memory in use"].used == service.memory_used_mb
    assert usage["CPU, recent average"].used == service.cpu_used_percent
