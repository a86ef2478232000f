"""Customer cron jobs, run as the account's user and, on systemd nodes, in the account's slice.

A job is known by the panel's id. What the node holds of job ``<id>`` of account ``<user>``:

``/etc/hostwright/cron/<user>/<id>.cmd`` (root:<user> 0640, the folder root:<user> 0750)
    The customer's command, one line, run with ``/bin/sh`` by ``cron-run.sh`` (below), which
    the agent writes to ``/usr/local/lib/hostwright/cron-run.sh``. Only the account (and root)
    can read it; nobody but root can change it.
systemd nodes: ``hostwright-cron-<user>-<id>.timer`` and ``.service`` in /etc/systemd/system
    The timer holds the schedule (``OnCalendar=``, converted from the five cron fields); the
    service runs ``cron-run.sh`` with ``User=<user>`` in ``Slice=user-<uid>.slice``, so the job
    is under the plan's limits and in the slice's counters. systemd starts no second run of a
    job while one is still running. A disabled job keeps its units, with the timer stopped.
nodes without systemd: the account's crontab (``/var/spool/cron/crontabs/<user>``)
    One line per enabled job, after a marker comment ``# hostwright cron <id>``; lines the
    marker does not name are left as they are. Only root may use crontab(1) (part 45-cron):
    the agent writes the file into cron's spool itself. ``cron-run.sh`` moves the job into the
    account's cgroups first (the account owns their ``cgroup.procs``, see ``hwagent.limits``).

Output is ``logged`` (appended, with a line before and after each run, to
``/var/log/hostwright/cron/<user>.log``: the account's file in root's folder, emptied when it
passes 1 MiB, read by ``logs.tail``) or ``mailed`` (to the job's address through the node's
sites' sendmail, ``site-sendmail``, when there is any, like cron's MAILTO, from an address
of the account's own domain). A suspended account's jobs do not run: the
account's ``paused`` marker stops ``cron-run.sh``, and its timers are stopped.
"""

from __future__ import annotations

import contextlib
import glob
import grp
import os
import pwd
import re
import tempfile
from typing import Any

from hwagent import system, validate
from hwagent.errors import AgentError
from hwagent.registry import action

JOB_DIR = "/etc/hostwright/cron"
LOG_DIR = "/var/log/hostwright/cron"
UNIT_DIR = "/etc/systemd/system"
RUNNER = "/usr/local/lib/hostwright/cron-run.sh"
SPOOL = "/var/spool/cron/crontabs"
SITE_SENDMAIL = "/usr/local/lib/hostwright/site-sendmail"
MAX_COMMAND = 1000
MAX_JOB_ID = 10**12
OUTPUTS = ("logged", "mailed")
LOG_LIMIT = 2**20
_ADDRESS = re.compile(
    r"^[A-Za-z0-9._+-]{1,64}@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"
)
_COMMAND = re.compile(r"^[\x20-\x7e]+$")
_DAYS = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
}
# (lowest, highest) of minute, hour, day of month, month, day of week.
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))

RUNNER_TEXT = f"""#!/bin/sh
# Managed by Hostwright (hwagent.cron): runs one cron job of a hosting account, as its user.
# cron-run.sh <user> <job id> logged|mailed [address [sender]]
set -u
user=$1 job=$2 mode=$3 to=${{4:-}} from=${{5:-}}
[ "$(id -un)" = "$user" ] || {{ echo "cron-run: not running as $user" >&2; exit 64; }}
dir={JOB_DIR}/$user
[ -e "$dir/paused" ] && exit 0
# Without systemd the job joins the account's cgroups (the account owns their cgroup.procs).
for c in cpu cpuacct memory pids; do
  f=/sys/fs/cgroup/$c/hostwright/$user/cgroup.procs
  if [ -w "$f" ]; then echo $$ >"$f" 2>/dev/null || true; fi
done
export HOME="/home/$user" USER="$user" LOGNAME="$user" SHELL=/bin/sh
export PATH=/usr/local/bin:/usr/bin:/bin
cd "$HOME" 2>/dev/null || cd /
if [ "$mode" = mailed ]; then
  out=$(mktemp -p "$HOME/tmp" .cron-XXXXXX 2>/dev/null || mktemp)
  /bin/sh "$dir/$job.cmd" </dev/null >"$out" 2>&1
  status=$?
  if [ -s "$out" ]; then
    # Accounts send through the sites' sendmail (SMTP to the node's Postfix, which holds them
    # to their own domains and hourly limit), as PHP's mail() does.
    sendmail={SITE_SENDMAIL}
    [ -x "$sendmail" ] || sendmail=/usr/sbin/sendmail
    sender=""
    if [ -n "$from" ]; then sender="-f$from"; fi
    {{
      if [ -n "$from" ]; then printf 'From: %s\n' "$from"; fi
      printf 'To: %s\nSubject: Cron job %s of %s (exit %s)\n' "$to" "$job" "$user" "$status"
      printf 'Content-Type: text/plain; charset=utf-8\n\n'
      head -c 262144 "$out"
    }} | "$sendmail" -i ${{sender:+"$sender"}} -- "$to"
  fi
  rm -f "$out"
  exit "$status"
fi
log={LOG_DIR}/$user.log
if [ "$(stat -c %s "$log" 2>/dev/null || echo 0)" -gt {LOG_LIMIT} ]; then : >"$log"; fi
{{
  echo "--- $(date -u +%Y-%m-%dT%H:%M:%SZ) job $job started"
  /bin/sh "$dir/$job.cmd" </dev/null 2>&1
  status=$?
  echo "--- $(date -u +%Y-%m-%dT%H:%M:%SZ) job $job ended, exit $status"
}} >>"$log" 2>&1
exit "${{status:-0}}"
"""


# --- what the panel sends, checked again ------------------------------------------------------


def _expand(field: str, low: int, high: int) -> list[int]:
    values: set[int] = set()
    for part in field.split(","):
        base, _, step = part.partition("/")
        if base == "*":
            start, end = low, high
        elif "-" in base:
            start, end = (int(n) for n in base.split("-"))
        else:
            start = end = int(base)
            if step:
                end = high  # "5/10" is "from 5 on, every 10"
        values.update(range(start, end + 1, int(step) if step else 1))
    return sorted(values)


def schedule(value: object) -> tuple[str, list[str]]:
    """The schedule (five cron fields, or @hourly, @daily, @weekly, @monthly, @yearly) and the
    systemd calendar expressions that fire at the same minutes. As in cron, when both the day
    of the month and the day of the week are restricted, a day matching either one counts (two
    expressions)."""
    text = validate.cron_schedule(value)
    if text == "@reboot":
        raise AgentError("invalid", "@reboot is not a schedule a hosting account can have")
    fields = _MACROS.get(text, text).split(" ")
    minute, hour, dom, month, dow = (
        _expand(f, low, high) for f, (low, high) in zip(fields, _RANGES, strict=True)
    )
    days = sorted({d % 7 for d in dow})

    def part(values: list[int], low: int, high: int, fmt: str = "{:02d}") -> str:
        if values == list(range(low, high + 1)):
            return "*"
        return ",".join(fmt.format(v) for v in values)

    time = f"{part(hour, 0, 23)}:{part(minute, 0, 59)}:00"
    months = part(month, 1, 12)
    any_dom = dom == list(range(1, 32))
    any_dow = days == list(range(7))
    weekdays = ",".join(_DAYS[d] for d in days)
    if any_dom and any_dow:
        return text, [f"*-{months}-* {time}"]
    if any_dow:
        return text, [f"*-{months}-{part(dom, 1, 31)} {time}"]
    if any_dom:
        return text, [f"{weekdays} *-{months}-* {time}"]
    return text, [f"*-{months}-{part(dom, 1, 31)} {time}", f"{weekdays} *-{months}-* {time}"]


def command(value: object) -> str:
    """One line of printable ASCII, at most 1000 characters."""
    if not isinstance(value, str) or not value.strip():
        raise AgentError("invalid", "the command is empty")
    if len(value) > MAX_COMMAND or not _COMMAND.fullmatch(value):
        raise AgentError(
            "invalid",
            f"the command must be one line of at most {MAX_COMMAND} printable ASCII characters",
        )
    return value


def job_id(value: object) -> int:
    return validate.positive_int(value, name="job id", maximum=MAX_JOB_ID)


def address(value: object) -> str:
    if not isinstance(value, str) or len(value) > 254 or not _ADDRESS.fullmatch(value):
        raise AgentError("invalid", f"{str(value)[:80]!r} is not an e-mail address for cron mail")
    return value


# --- files and units --------------------------------------------------------------------------


def _unit(user: str, job: int, kind: str) -> str:
    return f"hostwright-cron-{user}-{job}.{kind}"


def _job_files(user: str) -> dict[int, str]:
    found = {}
    for path in glob.glob(f"{JOB_DIR}/{user}/*.cmd"):
        name = os.path.basename(path)[: -len(".cmd")]
        if name.isdigit():
            found[int(name)] = path
    return found


def _account_dir(user: str) -> str:
    """``/etc/hostwright/cron/<user>``, root:<user> 0750 (the account reads its commands)."""
    gid = pwd.getpwnam(user).pw_gid
    for path, mode, group in ((JOB_DIR, 0o755, 0), (f"{JOB_DIR}/{user}", 0o750, gid)):
        with contextlib.suppress(FileExistsError):
            os.makedirs(path, mode=mode)
        st = os.lstat(path)
        if os.path.islink(path) or st.st_uid != 0:
            raise AgentError("unsafe_path", f"{path} is not root's")
        if st.st_gid != group or st.st_mode & 0o7777 != mode:
            os.chown(path, 0, group)
            os.chmod(path, mode)
    return f"{JOB_DIR}/{user}"


def _log_file(user: str) -> None:
    """The account's cron log: its own file (it writes it) in root's folder (it cannot put a
    link in its place)."""
    os.makedirs(LOG_DIR, mode=0o755, exist_ok=True)
    path = f"{LOG_DIR}/{user}.log"
    pw = pwd.getpwnam(user)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o640)
    try:
        os.fchown(fd, pw.pw_uid, pw.pw_gid)
        os.fchmod(fd, 0o640)
    finally:
        os.close(fd)


def log_path(user: str) -> str:
    return f"{LOG_DIR}/{user}.log"


def _runner_args(user: str, job: int, output: str, to: str, sender: str) -> str:
    """The runner's arguments: validated words only (no quoting needed in a unit or crontab)."""
    if output != "mailed":
        return f"{user} {job} {output}"
    return f"{user} {job} {output} {to}" + (f" {sender}" if sender else "")


def _service_text(user: str, job: int, output: str, to: str, sender: str = "") -> str:
    from hwagent.limits import account_slice

    args = _runner_args(user, job, output, to, sender)
    return (
        "# Managed by Hostwright (hwagent.cron): a cron job of a hosting account.\n"
        f"[Unit]\nDescription=Cron job {job} of hosting account {user}\n\n"
        f"[Service]\nType=oneshot\nUser={user}\nGroup={user}\n"
        f"Slice={account_slice(user)}\n"
        f"ExecStart=/bin/sh {RUNNER} {args}\n"
        "Nice=5\nTimeoutStartSec=6h\nUMask=0022\n"
    )


def _timer_text(user: str, job: int, calendar: list[str]) -> str:
    lines = "".join(f"OnCalendar={c}\n" for c in calendar)
    return (
        "# Managed by Hostwright (hwagent.cron): when a cron job of a hosting account runs.\n"
        f"[Unit]\nDescription=Cron job {job} of hosting account {user}\n\n"
        f"[Timer]\n{lines}AccuracySec=1s\n\n[Install]\nWantedBy=timers.target\n"
    )


def _systemctl(*args: str, what: str = "changing cron timers") -> None:
    system.run(["systemctl", *args], what=what)


def _timer_wanted(user: str, job: int) -> bool:
    return os.path.islink(f"{UNIT_DIR}/timers.target.wants/{_unit(user, job, 'timer')}")


def _paused(user: str) -> bool:
    return os.path.exists(f"{JOB_DIR}/{user}/paused")


# The account's crontab, for nodes without systemd.


def _marker(job: int) -> str:
    return f"# hostwright cron {job}"


def _crontab_path(user: str) -> str:
    return f"{SPOOL}/{user}"


def _read_crontab(user: str) -> list[str]:
    text = system.read_text(_crontab_path(user))
    return text.splitlines() if text else []


def _without(lines: list[str], job: int | None) -> list[str]:
    """The crontab without job ``job``'s marker and line (every job's, for ``None``)."""
    kept: list[str] = []
    skip = False
    for line in lines:
        if skip:
            skip = False
            continue
        ours = line == _marker(job) if job is not None else line.startswith("# hostwright cron ")
        if ours:
            skip = True
            continue
        kept.append(line)
    return kept


def _write_crontab(user: str, lines: list[str]) -> None:
    """The account's crontab file in cron's spool, written whole: the account's own (cron
    runs nothing else), 0600, renamed into place so cron reads the old or the new one. The
    spool folder is root's: no customer can put anything there (crontab(1) is root's only)."""
    path = _crontab_path(user)
    if not lines:
        system.remove_file(path)
        return
    uid = pwd.getpwnam(user).pw_uid
    try:
        gid = grp.getgrnam("crontab").gr_gid
    except KeyError:
        raise AgentError("not_prepared", "cron is not installed on the node") from None
    data = ("\n".join(lines) + "\n").encode()
    fd, tmp = tempfile.mkstemp(prefix=f".{user}.", dir=SPOOL)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchown(f.fileno(), uid, gid)
            os.fchmod(f.fileno(), 0o600)
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _crontab_line(user: str, job: int, text: str, output: str, to: str, sender: str = "") -> str:
    cron = _MACROS.get(text, text)
    args = _runner_args(user, job, output, to, sender)
    return f"{cron} /bin/sh {RUNNER} {args}"


# --- actions ----------------------------------------------------------------------------------


@action("cron.ensure")
def ensure(
    *,
    user: str,
    job: int,
    schedule_text: str,
    command_text: str,
    output: str = "logged",
    mail_to: str = "",
    mail_from: str = "",
    enabled: bool = True,
) -> dict[str, Any]:
    """The account's cron job ``job``: its command, schedule and output, running (``enabled``)
    or kept without running; mailed output goes to ``mail_to`` from ``mail_from`` (an address
    of the account's own domains: the node's mail filter holds accounts to them). Checks the
    user exists and every value again first. Answers
    ``created`` when the job was not on the node before. On a failure part-way the job may be
    half-written; running it again finishes it."""
    user = validate.linux_user(user)
    job = job_id(job)
    text, calendar = schedule(schedule_text)
    cmd = command(command_text)
    if output not in OUTPUTS:
        raise AgentError("invalid", "output is 'logged' or 'mailed'")
    to = address(mail_to) if output == "mailed" else ""
    sender = address(mail_from) if output == "mailed" and mail_from else ""
    if not isinstance(enabled, bool):
        raise AgentError("invalid", "enabled is true or false")
    from hwagent.safefs import account

    account(user)
    with system.node_lock(f"cron-{user}"):
        changed = system.replace_file(RUNNER, RUNNER_TEXT, mode=0o755)
        folder = _account_dir(user)
        path = f"{folder}/{job}.cmd"
        created = not os.path.exists(path)
        changed |= system.replace_file(path, cmd + "\n", mode=0o640)
        os.chown(path, 0, pwd.getpwnam(user).pw_gid)
        if output == "logged":
            _log_file(user)
        if system.have_systemd():
            changed |= _ensure_units(user, job, calendar, output, to, sender, enabled)
        else:
            lines = _read_crontab(user)
            new = _without(lines, job)
            if enabled:
                new += [_marker(job), _crontab_line(user, job, text, output, to, sender)]
            if new != lines:
                _write_crontab(user, new)
                changed = True
    return {"changed": changed or created, "created": created, "calendar": calendar}


def _ensure_units(
    user: str, job: int, calendar: list[str], output: str, to: str, sender: str, enabled: bool
) -> bool:
    service = f"{UNIT_DIR}/{_unit(user, job, 'service')}"
    timer = f"{UNIT_DIR}/{_unit(user, job, 'timer')}"
    changed = system.replace_file(service, _service_text(user, job, output, to, sender))
    timer_changed = system.replace_file(timer, _timer_text(user, job, calendar))
    if changed or timer_changed:
        _systemctl("daemon-reload", what="reloading systemd")
    name = _unit(user, job, "timer")
    if enabled and not _timer_wanted(user, job):
        _systemctl("enable", "--quiet", name)
        changed = True
    elif not enabled and _timer_wanted(user, job):
        _systemctl("disable", "--now", "--quiet", name)
        changed = True
    if enabled and not _paused(user):
        # A changed schedule takes effect on a restart of the timer.
        _systemctl("restart" if timer_changed else "start", name)
    return changed or timer_changed


def _remove_job(user: str, job: int) -> bool:
    changed = False
    if system.have_systemd():
        names = [_unit(user, job, k) for k in ("timer", "service")]
        paths = [f"{UNIT_DIR}/{n}" for n in names]
        if any(os.path.exists(p) for p in paths):
            system.run(["systemctl", "disable", "--now", "--quiet", names[0]], check=False)
            system.run(["systemctl", "stop", names[1]], check=False)
            for p in paths:
                changed |= system.remove_file(p)
            _systemctl("daemon-reload", what="reloading systemd")
    else:
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            lines = _read_crontab(user)
            new = _without(lines, job)
            if new != lines:
                _write_crontab(user, new)
                changed = True
    changed |= system.remove_file(f"{JOB_DIR}/{user}/{job}.cmd")
    return changed


@action("cron.remove")
def remove(*, user: str, job: int) -> dict[str, Any]:
    """Remove the account's cron job ``job`` (a run in progress is stopped). Nothing to do
    when it is gone."""
    user = validate.linux_user(user)
    job = job_id(job)
    with system.node_lock(f"cron-{user}"):
        return {"changed": _remove_job(user, job)}


@action("cron.list")
def listing(*, user: str) -> dict[str, Any]:
    """The ids of the account's jobs on the node, and whether each runs (is enabled)."""
    user = validate.linux_user(user)
    jobs = {}
    crontab = "\n".join(_read_crontab(user)) if not system.have_systemd() else ""
    for job in sorted(_job_files(user)):
        if system.have_systemd():
            jobs[str(job)] = _timer_wanted(user, job)
        else:
            jobs[str(job)] = _marker(job) in crontab.splitlines()
    return {"changed": False, "jobs": jobs, "paused": _paused(user)}


def purge(user: str) -> bool:
    """Every job of the account, its folder and its log (for the account's removal)."""
    changed = False
    with system.node_lock(f"cron-{user}"):
        for job in sorted(_job_files(user)):
            changed |= _remove_job(user, job)
        if system.have_systemd():
            for path in glob.glob(f"{UNIT_DIR}/hostwright-cron-{user}-*.*"):
                changed |= system.remove_file(path)
        folder = f"{JOB_DIR}/{user}"
        changed |= system.remove_file(f"{folder}/paused")
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(folder)
            changed = True
        changed |= system.remove_file(log_path(user))
    return changed


def pause(user: str, paused: bool) -> None:
    """Stop (``paused``) or let run again the account's jobs: a marker ``cron-run.sh`` obeys,
    and on systemd nodes its enabled timers stopped or started."""
    if not os.path.isdir(f"{JOB_DIR}/{user}"):
        return
    marker = f"{JOB_DIR}/{user}/paused"
    with system.node_lock(f"cron-{user}"):
        if paused:
            system.replace_file(marker, "", mode=0o644)
        else:
            system.remove_file(marker)
        if not system.have_systemd():
            return
        timers = [_unit(user, j, "timer") for j in sorted(_job_files(user))]
        wanted = [t for t in timers if os.path.islink(f"{UNIT_DIR}/timers.target.wants/{t}")]
        if wanted:
            system.run(["systemctl", "stop" if paused else "start", *wanted], check=False)
