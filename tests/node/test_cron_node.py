"""Customer cron jobs on a node without systemd (the loopback node): lines of the account's
crontab, run by cron as the account's user, inside the account's cgroups (where the limits
are enforced on this machine's cgroup v1)."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioning import ssh
from tests.node.test_agent_attacks import agent, error_of, ok

pytestmark = pytest.mark.node

OWNER = f"hostwright service {800000 + os.getpid() % 99999}"
SPOOL = Path("/var/spool/cron/crontabs")
RUNNER = "/usr/local/lib/hostwright/cron-run.sh"


@pytest.fixture
def account(test_node: Any) -> Iterator[str]:
    user = f"{test_node.user_prefix}cron{secrets.token_hex(2)}"
    ok(
        agent(
            test_node,
            ssh.action("user.ensure", user=user, owner=OWNER),
            ssh.action("limits.set", user=user, cpu_percent=50, memory_mb=128, processes=20),
        )
    )
    yield user
    agent(
        test_node,
        ssh.action("user.remove", user=user, owner=OWNER),
        ssh.action("limits.remove", user=user),
    )


def job(user: str, job_id: int, **kw: Any) -> ssh.AgentAction:
    args = {
        "user": user,
        "job": job_id,
        "schedule_text": "* * * * *",
        "command_text": "id -un; cat /proc/self/cgroup",
        "output": "logged",
        **kw,
    }
    return ssh.action("cron.ensure", **args)


def test_jobs_are_the_accounts_crontab_lines_and_run_as_the_account_in_its_cgroups(
    test_node, account
):
    user = account
    crontab = SPOOL / user
    log = Path(f"/var/log/hostwright/cron/{user}.log")
    # when two jobs are added, one of them disabled
    first, _ = ok(
        agent(test_node, job(user, 1), job(user, 2, schedule_text="@daily", enabled=False))
    )
    assert first.data["created"] is True

    # then the account's crontab holds the enabled one, and only root can change it
    lines = crontab.read_text().splitlines()
    assert lines == [
        "# hostwright cron 1",
        f"* * * * * /bin/sh {RUNNER} {user} 1 logged",
    ]
    st = crontab.stat()
    assert (
        st.st_uid == int(subprocess.check_output(["id", "-u", user]))
        and st.st_mode & 0o777 == 0o600
    )
    refused = subprocess.run(
        ["runuser", "-u", user, "--", "crontab", "-l"], capture_output=True, check=False
    )
    assert refused.returncode != 0
    # and the command is readable by the account and nobody else
    cmd = Path(f"/etc/hostwright/cron/{user}/1.cmd")
    assert cmd.read_text() == "id -un; cat /proc/self/cgroup\n"
    assert cmd.stat().st_uid == 0 and cmd.stat().st_mode & 0o777 == 0o640

    # when cron's minute comes, then the job ran as the account, inside its cgroups
    deadline = time.monotonic() + 75
    while time.monotonic() < deadline and "ended, exit" not in (
        log.read_text() if log.exists() else ""
    ):
        time.sleep(2)
    text = log.read_text()
    assert f"\n{user}\n" in text, text
    assert f":/hostwright/{user}" in text, text  # cpu, memory, pids of this machine's v1
    assert "ended, exit 0" in text

    # when the job changes, then its line is replaced and the other lines stay
    ok(agent(test_node, job(user, 1, schedule_text="*/10 2 * * 1-5")))
    assert crontab.read_text().splitlines()[1].startswith("*/10 2 * * 1-5 ")
    # and a suspended account's jobs do not run: the runner stops at the pause marker
    ok(agent(test_node, ssh.action("user.lock", user=user, owner=OWNER)))
    before = log.read_text()
    subprocess.run(["runuser", "-u", user, "--", "/bin/sh", RUNNER, user, "1", "logged"],
                   check=True)  # fmt: skip
    assert log.read_text() == before
    ok(agent(test_node, ssh.action("user.unlock", user=user, owner=OWNER)))
    subprocess.run(["runuser", "-u", user, "--", "/bin/sh", RUNNER, user, "1", "logged"],
                   check=True)  # fmt: skip
    assert log.read_text() != before

    # when the jobs are removed, then the crontab goes with the last one
    ok(agent(test_node, ssh.action("cron.remove", user=user, job=1)))
    assert not crontab.exists()
    (listed,) = ok(agent(test_node, ssh.action("cron.list", user=user)))
    assert listed.data["jobs"] == {"2": False}


def test_the_account_removal_takes_its_jobs(test_node):
    user = f"{test_node.user_prefix}cronrm{secrets.token_hex(2)}"
    ok(agent(test_node, ssh.action("user.ensure", user=user, owner=OWNER), job(user, 5)))
    assert (SPOOL / user).exists()
    (removed,) = ok(agent(test_node, ssh.action("user.remove", user=user, owner=OWNER)))
    assert "cron" in removed.data["did"]
    assert not (SPOOL / user).exists()
    assert not Path(f"/etc/hostwright/cron/{user}").exists()
    assert not Path(f"/var/log/hostwright/cron/{user}.log").exists()


def test_the_agent_refuses_what_the_panel_would_refuse(test_node, account):
    for override in (
        {"schedule_text": "@reboot"},
        {"command_text": "echo a\necho b"},
        {"output": "mailed", "mail_to": "x@example.com\nBcc: y@example.com"},
    ):
        assert error_of(agent(test_node, job(account, 9, **override)))["code"] == "invalid"
    assert not (SPOOL / account).exists()
