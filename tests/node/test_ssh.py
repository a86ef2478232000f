"""The SSH executor against the test node's sshd: pinning, timeouts, one shell per node."""

from __future__ import annotations

import json
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


def run(test_node, commands, *, timeout=20.0, **kw):
    return ssh.run(target(test_node, **kw), commands, key_path=test_node.key_path, timeout=timeout)


def test_commands_run_in_one_script_with_each_exit_code_recorded(test_node):
    # when three commands go to the node, one of them allowed to fail
    result = run(
        test_node,
        [ssh.cmd("echo", "a b;$(id)"), ssh.cmd("false", check=False), ssh.cmd("id", "-un")],
    )

    # then each ran once, in order, with its arguments untouched, and its exit code recorded
    assert result.ok
    assert result.stdout == "a b;$(id)\nroot\n"
    assert [(c.cmd, c.exit) for c in result.commands] == [
        ("echo 'a b;$(id)'", 0),
        ("false", 1),
        ("id -un", 0),
    ]


def test_a_failing_checked_command_stops_the_script(test_node):
    result = run(test_node, [ssh.cmd("false"), ssh.cmd("echo", "never")])
    assert result.exit == 1 and "never" not in result.stdout
    assert len(result.commands) == 1


def test_secrets_are_masked_in_commands_and_output(test_node):
    result = run(test_node, [ssh.cmd("echo", "pw=hunter22secret", secrets=("hunter22secret",))])
    assert result.stdout == "pw=***\n"
    assert result.commands[0].cmd == "echo pw=***"


def test_unknown_and_changed_host_keys_are_refused_with_the_fingerprint(test_node):
    presented = ssh.fingerprint(ssh.fetch_host_key(test_node.address, test_node.port))
    with pytest.raises(HostKeyRefused, match="no pinned host key"):
        run(test_node, [ssh.cmd("true")], host_key="", node_id=9002)
    other = " ".join(Path(f"{test_node.key_path}.pub").read_text().split()[:2])
    with pytest.raises(HostKeyRefused) as exc:
        run(test_node, [ssh.cmd("touch", "/tmp/hw-must-not-exist")], host_key=other, node_id=9003)
    assert presented in str(exc.value) and exc.value.clean


def test_a_timeout_reports_an_unknown_outcome_and_the_next_run_reconnects(test_node):
    # given a command slower than the timeout
    with pytest.raises(OutcomeUnknown, match="outcome is unknown"):
        run(test_node, [ssh.cmd("sleep", "3")], timeout=0.5, node_id=9004)
    # then the session was dropped, and the next command gets a fresh shell
    assert run(test_node, [ssh.cmd("true")], node_id=9004).ok


def test_the_session_is_kept_open_between_runs(test_node):
    # Each script runs in a subshell of the one long-lived remote shell: same grandparent.
    probe = ssh.cmd("sh", "-c", "ps -o ppid= -p $PPID")
    first = run(test_node, [probe], node_id=9005)
    second = run(test_node, [probe], node_id=9005)
    assert first.stdout and first.stdout == second.stdout


def test_a_closed_port_is_a_transient_error(test_node):
    t = ssh.Target(
        node_id=9006, address="127.0.0.1", port=1, user="root", host_key=test_node.host_key
    )
    with pytest.raises(TransientStepError, match="cannot connect"):
        ssh.run(t, [ssh.cmd("true")], key_path="/nonexistent", timeout=5)


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
