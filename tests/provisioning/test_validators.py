"""Values the panel sends to a node: refused with a clear message, or normalized."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioning import validators
from provisioning.errors import ProvisioningRefused


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("my-shop.co.uk", "my-shop.co.uk"),
    ],
)
def test_valid_domains_are_normalized_to_ascii(value, expected):
    assert validators.validate_domain(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("example.com; rm -rf /", "spaces or control characters"),
        ("example.com;reboot", "not allowed"),
        ("$(reboot).example.com", "not allowed"),
        ("`id`.example.com", "not allowed"),
        ("example.com\nlisten 8080", "spaces or control characters"),
        ("exa mple.com", "spaces or control characters"),
        ("../../etc/passwd", "empty labels"),
        ("a..example.com", "empty labels"),
        ("a" * 64 + ".com", "at most 63"),
        (("a" * 60 + ".") * 5 + "com", "at most 253"),
        ("localhost", "full domain name"),
        ("-bad.example.com", "not allowed"),
        ("www.example.com", "without 'www.'"),
        ("example.123", "top-level domain"),
        ("exam\u200bple.com", "valid international"),  # zero-width space
        ("xn--ls8h.example", "valid international"),  # punycode of an emoji: not IDNA 2008
        ("", "Enter a domain"),
        ("example.com'", "not allowed"),
    ],
)
def test_hostile_domains_are_refused_with_a_clear_message(value, message):
    with pytest.raises(ProvisioningRefused) as exc:
        validators.validate_domain(value)
    assert message in exc.value.messages[0]


@given(st.text(max_size=80))
@settings(max_examples=400)
def test_any_accepted_domain_is_a_plain_host_name(value):
    try:
        name = validators.validate_domain(value)
    except ProvisioningRefused:
        return
    # Only letters, digits, hyphens and dots get through: nothing a shell or nginx treats
    # specially.
    assert set(name) <= set("abcdefghijklmnopqrstuvwxyz0123456789-.")
    assert ".." not in name and len(name) <= 253


@given(st.text(max_size=40))
def test_usernames_and_database_names_follow_strict_patterns(value):
    for check in (validators.validate_username, validators.validate_db_name):
        try:
            name = check(value)
        except ProvisioningRefused:
            continue
        assert name.isascii() and all(c.isalnum() or c == "_" for c in name)


@given(st.text(max_size=60))
@settings(max_examples=300)
def test_node_configs_only_ever_contain_validated_names(value):
    # given any value offered as a domain
    try:
        domain = validators.validate_domain(value)
    except ProvisioningRefused:
        return
    # then the node agent, which checks it again, reads it the same way (or refuses a
    # look-alike the panel let through), and the server block it builds holds only that name
    from hwagent import sites
    from hwagent import validate as agent_validate
    from hwagent.errors import AgentError

    try:
        assert agent_validate.domain(domain) == domain
    except AgentError:
        return
    config = sites.site_config(service=1, user="hwtuser1", domain=domain, ip="")
    assert f"server_name {domain} www.{domain};" in config
    assert "\n" not in domain and ";" not in domain and "{" not in domain


# --- one domain check for the whole panel ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # IDNA 2008 keeps ß (IDNA 2003 turned it into "ss", a different domain)
        ("straße.de", "xn--strae-oqa.de"),
        ("Straße.DE", "xn--strae-oqa.de"),
        ("xn--strae-oqa.de", "xn--strae-oqa.de"),
        # UTS-46 mapping: full-width letters and the ideographic full stop, as browsers do
        ("\uff22ÜCHER。de", "xn--bcher-kva.de"),
        # Scripts that are written together stay accepted
        ("日本語テキスト.jp", "xn--nckya0bk5909dcvb2w6i.jp"),
        ("한국abc.kr", "xn--abc-lt8lk11n.kr"),
        ("пример.рф", "xn--e1afmkfd.xn--p1ai"),
    ],
)
def test_international_names_follow_idna_2008_with_uts46_mapping(value, expected):
    assert validators.domain_to_ascii(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "\u0430pple.com",  # Cyrillic a, then Latin
        "p\u0430ypal.com",  # Cyrillic a inside a Latin word
        "g\u03bfogle.com",  # Greek omicron
        "xn--pple-43d.com",  # the same trick already encoded
        "shop.ex\u0430mple.com",  # in any label, not only the first
    ],
)
def test_labels_mixing_scripts_are_refused(value):
    with pytest.raises(ProvisioningRefused) as exc:
        validators.domain_to_ascii(value)
    assert exc.value.code == "domain_mixed_script"
    assert "different alphabets" in exc.value.messages[0]


@pytest.mark.parametrize(
    "value",
    ["straße.de", "\u0430pple.com", "bücher.example", "exam\u200bple.com", "a" * 64 + ".com"],
)
def test_checkout_api_dns_and_mail_all_give_the_same_answer(value):
    # given the checkout's check, the node resources' check (DNS, mail, certificates) and
    # the engine's own
    from billing.errors import BillingError
    from billing.services import clean_domain
    from provisioning.errors import ProvisioningRefused
    from provisioning.validators import domain_to_ascii, validate_email

    def outcome(check, refusal):
        try:
            return check(value)
        except refusal:
            return "refused"

    # then they accept and refuse the same names, with the same ASCII form
    engine = outcome(validators.validate_domain, ProvisioningRefused)
    assert outcome(clean_domain, BillingError) == engine
    assert outcome(domain_to_ascii, ProvisioningRefused) == engine
    mail = outcome(lambda v: validate_email(f"info@{v}"), ProvisioningRefused)
    assert mail == ("refused" if engine == "refused" else f"info@{engine}")


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (validators.validate_username, "hwt123\n"),
        (validators.validate_db_name, "hwt123_main\n"),
        (lambda v: validators.validate_db_name(v, account="hwt123"), "blog\n"),
        (validators.validate_local_part, "info\n"),
        (validators.validate_node_name, "node1\n"),
        (validators.validate_host, "127.0.0.1\n"),
        (validators.validate_domain, "example.com\n"),
    ],
)
def test_a_trailing_newline_is_refused(check, value):
    # given a name that is valid but for a newline at its end (what a ``$`` pattern lets by)
    # then the one validator of its kind refuses it
    with pytest.raises(ProvisioningRefused):
        check(value)


def test_the_account_prefix_is_added_once_to_database_names():
    assert validators.validate_db_name("Shop", account="hwt123") == "hwt123_shop"
    assert validators.validate_db_name("hwt123_shop", account="hwt123") == "hwt123_shop"
    with pytest.raises(ProvisioningRefused):
        validators.validate_db_name("x;drop", account="hwt123")


def test_country_and_currency_codes_match_the_whole_value():
    from django.core.exceptions import ValidationError

    from accounts.models import country_code, currency_code

    for validator, value in ((country_code, "DE\n"), (currency_code, "EUR\n")):
        with pytest.raises(ValidationError):
            validator(value)
    country_code("DE")
