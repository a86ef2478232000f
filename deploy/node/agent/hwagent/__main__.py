"""``hostwright-agent --tier worker|web``: the only program the panel's SSH keys may run.

It reads requests from stdin until the channel closes, one JSON line each, and writes one
JSON line per request to stdout (see ``hwagent.protocol``). Standard output is reserved for
answers: the process's own fd 1 is pointed at stderr at start, so nothing an action or a
program it runs prints can be taken for an answer.
"""

from __future__ import annotations

import argparse
import os
import sys

MAX_LINE = 64 * 1024 * 1024
AGENT = "/usr/local/sbin/hostwright-agent"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hostwright-agent")
    parser.add_argument("--tier", choices=("worker", "web"), required=True)
    args = parser.parse_args(argv)

    os.umask(0o022)
    os.environ["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    os.environ["LC_ALL"] = "C"
    answers = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    from hwagent import protocol
    from hwagent.registry import load_all

    # Under a forced command sshd puts what the client asked for here: anything but this
    # program for this tier is refused, so `ssh node id` gets an error, not a shell.
    asked = os.environ.pop("SSH_ORIGINAL_COMMAND", None)
    if asked is not None and asked.split() not in (
        [AGENT, "--tier", args.tier],
        ["hostwright-agent", "--tier", args.tier],
    ):
        refusal = protocol.bad_request(None, "this key runs the node agent and nothing else")
        refusal["error"]["code"] = "forbidden"
        answers.write(protocol.encode(refusal))
        return 2

    load_all()
    stdin = sys.stdin.buffer
    while True:
        line = stdin.readline(MAX_LINE + 1)
        if not line:
            return 0
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            # Drop the rest of the oversized line, then refuse it.
            while line and not line.endswith(b"\n"):
                line = stdin.readline(MAX_LINE)
            answer = protocol.bad_request(None, "the request is too long")
        elif not line.strip():
            continue
        else:
            answer = protocol.handle_line(line, tier=args.tier)
        answers.write(protocol.encode(answer))


if __name__ == "__main__":
    sys.exit(main())
