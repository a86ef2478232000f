"""Validators of the agent: one per kind of name."""

from __future__ import annotations

from typing import Any

import pytest
from hwagent import validate
from hwagent.errors import AgentError


@pytest.mark.parametrize("good", ["abc", "hwt1abc", "a" * 32])
def test_linux_users(good: Any) -> None:
    assert validate.linux_user(good) == good


@pytest.mark.parametrize(
    "bad", ["ab", "Abc", "1abc", "a-b", "a_b", "root;id", "a" * 33, "", None, 5, "abc\n"]
)
def test_bad_linux_users(bad: Any) -> None:
    with pytest.raises(AgentError) as exc:
        validate.linux_user(bad)
    assert exc.value.code == "invalid"


@pytest.mark.parametrize(
    ("raw", "ascii_"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("\uff25\uff38\uff21\uff2d\uff30\uff2c\uff25.com", "example.com"),  # full-width
        ("日本語.jp", "xn--wgv71a119e.jp"),
        ("ひらがな漢字.jp", "xn--v8j0cwa6gy22xv2ya.jp"),
    ],
)
def test_domains_normalize_to_their_ascii_form(raw: Any, ascii_: Any) -> None:
    assert validate.domain(raw) == ascii_


@pytest.mark.parametrize(
    "bad",
    [
        "localhost",
        "exa mple.com",
        "example..com",
        "-a.com",
        "a-.com",
        "example.com/x",
        "ex;ample.com",
        "$(id).com",
        "www.example.com",
        "example.c0m",
        "a" * 64 + ".com",
        ("a" * 60 + ".") * 5 + "com",
        "p\u0430ypal.com",  # Cyrillic a inside a Latin label
        "exa\u200dmple.com",  # zero-width joiner
        "xn--zz.com",
        "",
        None,
    ],
)
def test_bad_domains(bad: Any) -> None:
    with pytest.raises(AgentError) as exc:
        validate.domain(bad)
    assert exc.value.code == "invalid"


def test_database_names_and_ownership() -> None:
    assert validate.db_name("hwt1_main") == "hwt1_main"
    assert validate.db_user("hwt1_wp") == "hwt1_wp"
    assert validate.owned_by("hwt1_main", "hwt1") == "hwt1_main"
    assert validate.owned_by("hwt1", "hwt1") == "hwt1"
    for bad in ("hwt1`; drop", "Hwt", "h", "hwt1 main", "hwt1-main"):
        with pytest.raises(AgentError):
            validate.db_name(bad)
    with pytest.raises(AgentError):
        validate.owned_by("hwt2_main", "hwt1")
    with pytest.raises(AgentError):
        validate.owned_by("hwt10_main", "hwt1")


@pytest.mark.parametrize("good", ["info", "a.b", "first+tag", "x_y-z"])
def test_local_parts(good: Any) -> None:
    assert validate.local_part(good) == good


@pytest.mark.parametrize("bad", ["", ".a", "a.", "a..b", "a b", "A", "a@b", "a/b", "x" * 65])
def test_bad_local_parts(bad: Any) -> None:
    with pytest.raises(AgentError):
        validate.local_part(bad)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("", ""), (".", ""), ("public_html", "public_html"), ("a//b/./c", "a/b/c"), ("a/", "a")],
)
def test_home_paths(raw: Any, clean: Any) -> None:
    assert validate.home_path(raw) == clean


@pytest.mark.parametrize("bad", ["/etc", "../x", "a/../../b", "a\x00b", "a\nb", "x" * 1100, 3])
def test_bad_home_paths(bad: Any) -> None:
    with pytest.raises(AgentError):
        validate.home_path(bad)
    with pytest.raises(AgentError):
        validate.home_path("", allow_root=False)


def test_file_names_and_modes() -> None:
    assert validate.file_name("a b.txt") == "a b.txt"
    for bad in ("", ".", "..", "a/b", "a\tb"):
        with pytest.raises(AgentError):
            validate.file_name(bad)
    assert validate.file_mode("644") == 0o644
    assert validate.file_mode("0755") == 0o755
    for bad_mode in ("4755", "999", "64", "u+x", 644):
        with pytest.raises(AgentError):
            validate.file_mode(bad_mode)


@pytest.mark.parametrize("good", ["* * * * *", "*/5 0-6 1,15 * 1-5", "@daily", " 0  3 * * 0 "])
def test_cron_schedules(good: Any) -> None:
    assert validate.cron_schedule(good)


@pytest.mark.parametrize(
    "bad",
    ["* * * *", "60 * * * *", "* 24 * * *", "*/0 * * * *", "5-1 * * * *", "@every", "* * * * * id"],
)
def test_bad_cron_schedules(bad: Any) -> None:
    with pytest.raises(AgentError):
        validate.cron_schedule(bad)


def test_numbers_and_lines() -> None:
    assert validate.positive_int(5, name="n") == 5
    for bad in (0, -1, True, "5", 10**13):
        with pytest.raises(AgentError):
            validate.positive_int(bad, name="n")
    assert validate.one_line("hello", name="x") == "hello"
    with pytest.raises(AgentError):
        validate.one_line("a\nb", name="x")
