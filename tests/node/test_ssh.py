"""The SSH executor against the test node's sshd: pinning, timeouts, one agent channel per
node; and the node's side of it: the panel's keys run the node agent and nothing else."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from provisioning import ssh
from provisioning.errors import HostKeyRefused, OutcomeUnknown, TransientStepError

pytestmark = pytest.mark.node


def target(test_node, *, host_key=None, node_id=9001) -> ssh.Target:
    return ssh.Target(
        node_id=node_id,
        address=test_node.address,
        port=test_node.port,
        user="root",
        host_key=test_node.host_key if host_key is None else host_key,
    )


def call(test_node, actions, *, key_path=None, tier="worker", node_id=9100, timeout=20.0):
    return ssh.call(
        target(test_node, node_id=node_id),
        actions,
        key_path=key_path or test_node.key_path,
        timeout=timeout,
        tier=tier,
    )


def test_the_agent_answers_a_batch_on_one_channel(test_node):
    result = call(test_node, [ssh.action("node.ping"), ssh.action("node.check")])
    assert result.ok
    ping, check = result.results
    assert ping.data["version"] >= 1 and check.data["missing"] == []
    # the second request goes over the same channel
    session = ssh.pool.get(target(test_node, node_id=9100), test_node.key_path)
    channel = session._agent
    assert call(test_node, [ssh.action("node.ping")]).ok
    assert session._agent is channel


def test_agent_errors_are_structured(test_node):
    result = call(
        test_node,
        [ssh.action("node.ping", cmd="id"), ssh.action("node.ping")],
        node_id=9101,
    )
    assert not result.ok
    failed, skipped = result.results
    assert failed.error and failed.error["code"] == "invalid"
    assert "unknown argument" in failed.error["message"] and skipped.skipped


def test_a_broken_agent_channel_is_reopened_once(test_node):
    assert call(test_node, [ssh.action("node.ping")], node_id=9102).ok
    session = ssh.pool.get(target(test_node, node_id=9102), test_node.key_path)
    assert session._agent is not None
    # the agent sees the end of its input and exits: the channel is dead but not yet known so
    session._agent.shutdown_write()
    assert call(test_node, [ssh.action("node.ping")], node_id=9102).ok


def test_the_web_key_reaches_only_web_actions_and_runs_no_shell(test_node):
    # given the web tier's key, which the node forces to run the agent for the web tier
    ok = call(
        test_node,
        [ssh.action("node.ping")],
        key_path=test_node.web_key_path,
        tier="web",
        node_id=9103,
    )
    assert ok.ok
    # a worker action is refused by the agent
    refused = call(
        test_node,
        [ssh.action("node.check")],
        key_path=test_node.web_key_path,
        tier="web",
        node_id=9103,
    )
    assert refused.results[0].error and refused.results[0].error["code"] == "forbidden"
    # asking for the worker tier, or for a shell, with that key gets an agent error
    asked = call(
        test_node,
        [ssh.action("node.ping")],
        key_path=test_node.web_key_path,
        tier="worker",
        node_id=9104,
    )
    assert not asked.ok and asked.error and asked.error["code"] == "forbidden"
    shell = ssh_command(test_node, test_node.web_key_path, "id")
    assert "uid=" not in shell.stdout
    assert json.loads(shell.stdout)["error"]["code"] == "forbidden"


def ssh_command(test_node, key_path, *command):
    return subprocess.run(
        ["ssh", "-T", "-p", str(test_node.port), "-i", key_path, "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         f"root@{test_node.address}", *command],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def test_unknown_and_changed_host_keys_are_refused_with_the_fingerprint(test_node):
    presented = ssh.fingerprint(ssh.fetch_host_key(test_node.address, test_node.port))
    with pytest.raises(HostKeyRefused, match="no pinned host key"):
        ssh.call(
            target(test_node, host_key="", node_id=9002),
            [ssh.action("node.ping")],
            key_path=test_node.key_path,
            timeout=20,
        )
    other = " ".join(Path(f"{test_node.key_path}.pub").read_text().split()[:2])
    with pytest.raises(HostKeyRefused) as exc:
        ssh.call(
            target(test_node, host_key=other, node_id=9003),
            [ssh.action("node.ping")],
            key_path=test_node.key_path,
            timeout=20,
        )
    assert presented in str(exc.value) and exc.value.clean


def test_a_timeout_reports_an_unknown_outcome_and_the_next_request_reconnects(test_node):
    # given a request whose answer cannot come back in time (a new channel starts the agent)
    with pytest.raises(OutcomeUnknown, match="outcome is unknown"):
        call(test_node, [ssh.action("node.check")], node_id=9004, timeout=0.005)
    # then the connection was dropped, and the next request gets a fresh one
    assert call(test_node, [ssh.action("node.ping")], node_id=9004).ok


def test_a_closed_port_is_a_transient_error(test_node):
    t = ssh.Target(
        node_id=9006, address="127.0.0.1", port=1, user="root", host_key=test_node.host_key
    )
    with pytest.raises(TransientStepError, match="cannot connect"):
        ssh.call(t, [ssh.action("node.ping")], key_path="/nonexistent", timeout=5)


def test_secret_arguments_are_masked_in_what_is_recorded():
    shown = ssh.action("db.user_password", secret=("password_hash",), password_hash="*ABC123")
    assert "*ABC123" not in shown.display() and "***" in shown.display()


# --- the node's side: both panel keys are forced to run the agent ----------------------------


@pytest.mark.parametrize("which", ["worker", "web"])
def test_a_panel_key_runs_no_shell_command(test_node, which):
    # given either of the panel's keys
    key = test_node.key_path if which == "worker" else test_node.web_key_path
    marker = Path(f"/tmp/hw-forced-command-{secrets.token_hex(6)}")
    # when a client asks the node for a shell command instead of the agent
    shown = ssh_command(test_node, key, "id")
    touched = ssh_command(test_node, key, "touch", str(marker))
    # then the agent answers with its refusal and nothing ran
    assert "uid=" not in shown.stdout
    assert json.loads(shown.stdout)["error"]["code"] == "forbidden"
    assert json.loads(touched.stdout)["error"]["code"] == "forbidden"
    assert not marker.exists()


def test_both_panel_keys_are_restricted_to_the_agent_in_authorized_keys(test_node):
    lines = Path("/etc/hostwright/authorized_keys/root").read_text().splitlines()
    for key_path, tier in ((test_node.key_path, "worker"), (test_node.web_key_path, "web")):
        blob = Path(f"{key_path}.pub").read_text().split()[1]
        (line,) = [line for line in lines if f" {blob}" in line]
        assert line.startswith(
            f'restrict,command="/usr/local/sbin/hostwright-agent --tier {tier}" '
        )


def test_the_web_key_cannot_reach_account_or_database_actions(test_node):
    # given the web tier's key, which reaches only the per-account file and log actions
    for act in (
        ssh.action("user.ensure", user="hwtwebkey", owner="hostwright service 1"),
        ssh.action("db.remove", account="hwtwebkey", name="hwtwebkey_main"),
        ssh.action("user.remove", user="hwtwebkey", owner="hostwright service 1"),
    ):
        result = call(test_node, [act], key_path=test_node.web_key_path, tier="web", node_id=9110)
        # then the agent refuses each before it acts
        assert not result.ok
        assert result.results[0].error and result.results[0].error["code"] == "forbidden"


def test_sshd_lets_in_only_the_groups_that_should_log_in(test_node):
    # The test node's sshd (only the panel logs in there) and its effective configuration.
    conf = subprocess.run(
        ["/usr/sbin/sshd", "-T", "-f", "/etc/hostwright/sshd_config"],
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    assert "allowgroups root" in conf
    assert "denygroups hwnologin" in conf
    assert "passwordauthentication no" in conf
