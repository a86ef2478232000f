#!/usr/bin/python3
"""``sendmail`` for hosted sites: PHP's ``mail()`` (its ``sendmail_path``, set in
``40-php.sh``), and anything else that pipes a message to ``sendmail -t -i``, hands the
message to the node's Postfix over SMTP on 127.0.0.1:25.

Hosting accounts may not run Postfix's own ``sendmail`` and ``postdrop``. Over SMTP the node's
mail filter (``mail-sending.py milter``) knows the account by the connecting socket's owner,
checks the envelope sender and the ``From:`` header against the account's own domains and
counts the message against its hourly limit. A refusal is printed on stderr with the server's
reason and the exit status is not 0, so ``mail()`` returns false.

Options, as Postfix's and Sendmail's ``sendmail`` read them: ``-t`` (recipients also from
``To:``, ``Cc:`` and ``Bcc:``; ``Bcc:`` is removed), ``-i`` or ``-oi`` (a line with a single
dot does not end the message), ``-f ADDRESS`` or ``-r ADDRESS`` (the envelope sender; without
it, the ``From:`` header's address), recipients as arguments; ``-F NAME`` and the other
options are accepted and ignored. Runs as the calling user; standard library only.
"""

from __future__ import annotations

import smtplib
import sys
from email.utils import getaddresses

SERVER = ("127.0.0.1", 25)
EX_USAGE, EX_DATAERR, EX_UNAVAILABLE, EX_TEMPFAIL, EX_NOPERM = 64, 65, 69, 75, 77
# Options that take a value (in the same word or the next one).
WITH_VALUE = set("fFrBNOLRVXC")


def parse_args(argv: list[str]) -> tuple[bool, bool, str | None, list[str]]:
    """(-t given, -i given, the -f sender or None, recipients given as arguments)."""
    from_headers = ignore_dots = False
    sender: str | None = None
    recipients: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--":
            recipients.extend(words)
            break
        if not word.startswith("-") or word == "-":
            recipients.append(word)
            continue
        flag, rest = word[1], word[2:]
        if flag in WITH_VALUE:
            value = rest or next(words, "")
            if flag in "fr":
                sender = value.strip().strip("<>")
        elif flag == "o":
            ignore_dots = ignore_dots or rest == "i"
        elif set(word[1:]) <= {"t", "i"}:
            from_headers = from_headers or "t" in word
            ignore_dots = ignore_dots or "i" in word
    return from_headers, ignore_dots, sender, recipients


def _header_name(line: bytes) -> bytes:
    return line.split(b":", 1)[0].strip().lower() if b":" in line else b""


def split_message(
    data: bytes, *, ignore_dots: bool
) -> tuple[list[tuple[bytes, list[bytes]]], list[bytes]]:
    """The header fields (name, their lines) and the body lines, line ends removed."""
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if not ignore_dots and b"." in lines:
        lines = lines[: lines.index(b".")]
    headers: list[tuple[bytes, list[bytes]]] = []
    index = 0
    while index < len(lines) and lines[index]:
        line = lines[index]
        if line[:1] in (b" ", b"\t") and headers:
            headers[-1][1].append(line)
        elif b":" in line:
            headers.append((_header_name(line), [line]))
        else:
            break  # not a header: the body starts here
        index += 1
    body = lines[index + 1 :] if index < len(lines) and not lines[index] else lines[index:]
    return headers, body


def _values(headers: list[tuple[bytes, list[bytes]]], name: bytes) -> list[str]:
    return [
        b" ".join(lines).split(b":", 1)[1].decode("utf-8", "replace")
        for found, lines in headers
        if found == name
    ]


def envelope(argv: list[str], data: bytes) -> tuple[str, list[str], bytes]:
    """(envelope sender, recipients, the message to send) for a sendmail command line."""
    from_headers, ignore_dots, sender, recipients = parse_args(argv)
    headers, body = split_message(data, ignore_dots=ignore_dots)
    if from_headers:
        for name in (b"to", b"cc", b"bcc"):
            recipients += [a for _n, a in getaddresses(_values(headers, name)) if a]
        headers = [(name, lines) for name, lines in headers if name != b"bcc"]
    if sender is None:
        found = [a for _n, a in getaddresses(_values(headers, b"from")) if a]
        sender = found[0] if found else ""
    message = b"\r\n".join([line for _n, lines in headers for line in lines] + [b""] + body)
    return sender, list(dict.fromkeys(recipients)), message + b"\r\n"


def _status(code: int, text: bytes | str) -> int:
    reason = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    print(f"sendmail: the message was refused: {code} {reason}", file=sys.stderr)
    if 400 <= code < 500:
        return EX_TEMPFAIL
    return EX_NOPERM if "5.7." in reason else EX_UNAVAILABLE


def main(argv: list[str]) -> int:
    sender, recipients, message = envelope(argv, sys.stdin.buffer.read())
    if not recipients:
        print("sendmail: no recipients", file=sys.stderr)
        return EX_USAGE
    if not sender:
        print(
            "sendmail: no sender: give the message a From: header with an address of one of"
            " your own domains (or -f ADDRESS)",
            file=sys.stderr,
        )
        return EX_DATAERR
    try:
        with smtplib.SMTP(*SERVER, local_hostname="localhost", timeout=120) as smtp:
            refused = smtp.sendmail(sender, recipients, message)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        return _status(code, text)
    except smtplib.SMTPResponseException as exc:  # sender, data or connection refused
        return _status(exc.smtp_code, exc.smtp_error)
    except (OSError, smtplib.SMTPException) as exc:
        print(f"sendmail: the mail server cannot be reached now: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    for address, (code, text) in refused.items():
        print(f"sendmail: {address} was refused: {code} {text.decode()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
