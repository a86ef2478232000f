"""Customer cron jobs in the node agent: what it accepts, the timers it would make and the
crontab lines it keeps (no node needed)."""

from __future__ import annotations

from typing import Any

import pytest
from hwagent import cron, protocol
from hwagent.errors import AgentError
from hwagent.registry import load_all

load_all()

GOOD = {
    "user": "hwtgood1",
    "job": 12,
    "schedule_text": "*/15 * * * *",
    "command_text": "php public_html/cron.php",
    "output": "logged",
}


def refused(name: str, args: dict[str, Any]) -> dict[str, Any]:
    answer = protocol.handle(
        {"id": "t", "actions": [{"action": name, "args": args}]}, tier="worker"
    )
    (result,) = answer["results"]
    assert result["ok"] is False, (name, args, result)
    return dict(result["error"])


@pytest.mark.parametrize(
    ("text", "calendar"),
    [
        ("* * * * *", ["*-*-* *:*:00"]),
        ("*/15 * * * *", ["*-*-* *:00,15,30,45:00"]),
        ("30 2 * * *", ["*-*-* 02:30:00"]),
        ("@daily", ["*-*-* 00:00:00"]),
        ("@hourly", ["*-*-* *:00:00"]),
        ("0 3 * * 0", ["Sun *-*-* 03:00:00"]),
        ("0 3 * * 7", ["Sun *-*-* 03:00:00"]),
        ("0 0 1 */3 *", ["*-01,04,07,10-01 00:00:00"]),
        ("5/20 8-10 * * 1-5", ["Mon,Tue,Wed,Thu,Fri *-*-* 08,09,10:05,25,45:00"]),
        # Both days restricted: cron runs on either, so two calendar expressions.
        ("0 12 1,15 * 5", ["*-*-01,15 12:00:00", "Fri *-*-* 12:00:00"]),
    ],
)
def test_schedules_become_calendar_expressions_firing_at_the_same_minutes(
    text: str, calendar: list[str]
) -> None:
    assert cron.schedule(text) == (text, calendar)


@pytest.mark.parametrize(
    "bad",
    [
        "@reboot",
        "* * * *",
        "61 * * * *",
        "* * 0 * *",
        "*/0 * * * *",
        "* * * * * rm",
        "1;id * * * *",
    ],
)
def test_schedules_the_agent_refuses(bad: str) -> None:
    with pytest.raises(AgentError):
        cron.schedule(bad)


@pytest.mark.parametrize(
    "bad", ["", "   ", "a\nb", "echo \x00", "x" * 1001, "echo caf\u00e9", "a\tb", 12]
)
def test_commands_are_one_printable_ascii_line(bad: Any) -> None:
    with pytest.raises(AgentError):
        cron.command(bad)
    assert cron.command("cd public_html && php wp-cron.php >/dev/null 2>&1 # 100%")


@pytest.mark.parametrize(
    "bad",
    ["", "root", "a@b", "x@example.com\nBcc: y@example.com", "a b@example.com", "a@ex%le.com"],
)
def test_mail_goes_only_to_an_address(bad: str) -> None:
    with pytest.raises(AgentError):
        cron.address(bad)
    assert cron.address("Ops+cron@example.com") == "Ops+cron@example.com"


@pytest.mark.parametrize(
    "override",
    [
        {"job": 0},
        {"job": -3},
        {"schedule_text": "* * * * * *"},
        {"command_text": "echo a\necho b"},
        {"output": "syslog"},
        {"output": "mailed", "mail_to": ""},
        {"output": "mailed", "mail_to": "a@b.c;id"},
    ],
)
def test_cron_ensure_refuses_bad_values_before_anything_runs(override: dict[str, Any]) -> None:
    error = refused("cron.ensure", {**GOOD, **override})
    assert error["code"] == "invalid", error
    assert error["changed"] == []


def test_cron_remove_refuses_a_bad_job_id() -> None:
    assert refused("cron.remove", {"user": "hwtgood1", "job": True})["code"] == "invalid"


def test_the_timer_and_service_run_the_job_as_the_account() -> None:
    timer = cron._timer_text("hwtgood1", 12, ["*-*-01 00:00:00", "Fri *-*-* 00:00:00"])
    assert "OnCalendar=*-*-01 00:00:00\nOnCalendar=Fri *-*-* 00:00:00\n" in timer
    assert "WantedBy=timers.target" in timer


def test_crontab_lines_are_replaced_by_marker_and_others_are_kept() -> None:
    # given a crontab with a line of the customer's own and two of the panel's jobs
    lines = [
        "MAILTO=me@example.com",
        "# hostwright cron 1",
        "* * * * * /bin/sh /usr/local/lib/hostwright/cron-run.sh hwtgood1 1 logged",
        "0 5 * * * echo own",
        "# hostwright cron 2",
        "@daily /bin/sh /usr/local/lib/hostwright/cron-run.sh hwtgood1 2 logged",
    ]
    # then removing job 1 keeps everything else, and removing all keeps the customer's
    assert cron._without(lines, 1) == [lines[0], lines[3], lines[4], lines[5]]
    assert cron._without(lines, None) == [lines[0], lines[3]]
    # and a job's line runs the runner with validated words only
    line = cron._crontab_line("hwtgood1", 3, "@weekly", "mailed", "ops@example.com")
    assert line == (
        "0 0 * * 0 /bin/sh /usr/local/lib/hostwright/cron-run.sh hwtgood1 3 mailed ops@example.com"
    )


def test_the_runner_obeys_the_pause_and_never_trusts_its_arguments_as_code() -> None:
    text = cron.RUNNER_TEXT
    assert '[ -e "$dir/paused" ] && exit 0' in text
    assert '/bin/sh "$dir/$job.cmd"' in text  # the command is a file, never an argument
    assert "eval" not in text
