"""Every panel URL that names a customer's object answers a stranger with 404, never data.

The URL patterns are read from the URLconf, so a page added to ``panel.urls`` is covered
without touching this file; a new path parameter must be given a value below or the test
fails and says so.
"""

from __future__ import annotations

import pytest
from django.urls import URLPattern, get_resolver, reverse

from panel.files import LOG_KINDS
from panel.forms import FILE_ACTION_FORMS
from panel.resources import RESOURCE_ACTIONS
from provisioning.models import StepRun
from tests.panel.conftest import make_operation, make_run, make_service

pytestmark = pytest.mark.django_db

# Pages scoped by the signed-in user alone (no object in the URL): nothing to guess.
NO_OBJECT = {"activity", "impersonation_stop"}


def panel_patterns() -> list[URLPattern]:
    resolver = get_resolver()
    namespace = resolver.namespace_dict["panel"][1]
    return [p for p in namespace.url_patterns if isinstance(p, URLPattern)]


def urls_for(service, operation) -> list[str]:
    values = {
        "service_id": [service.pk],
        "operation_id": [operation.pk],
        "kind": list(LOG_KINDS),
    }
    # Each view's own action names, so the 404 comes from the scoping, not an unknown action.
    actions = {"file_action": list(FILE_ACTION_FORMS), "resource_action": list(RESOURCE_ACTIONS)}
    urls = []
    for pattern in panel_patterns():
        if pattern.name in NO_OBJECT:
            continue
        values["action"] = actions.get(pattern.name or "", [])
        params = list(pattern.pattern.converters)
        missing = [p for p in params if p not in values]
        assert not missing, f"panel:{pattern.name} has parameters {missing} this test must fill"
        combos: list[dict[str, object]] = [{}]
        for param in params:
            combos = [{**c, param: v} for c in combos for v in values[param]]
        urls += [reverse(f"panel:{pattern.name}", kwargs=c) for c in combos]
    return urls


def test_every_panel_url_is_404_for_a_stranger(client, owner, customer, stranger, plan, node):
    # given Olivia's service with an operation
    service = make_service(customer, plan, node, domain="secret-shop.example.com")
    operation = make_operation(service)
    make_run(operation, "validate", StepRun.Status.SUCCEEDED)
    urls = urls_for(service, operation)
    assert len(urls) >= 10
    client.force_login(stranger)
    for url in urls:
        for query in ("", "?path=public_html", "?path=public_html/index.html"):
            # when the stranger GETs and POSTs it
            get = client.get(url + query)
            post = client.post(
                url + query,
                {
                    "path": "public_html",
                    "name": "x",
                    "mode": "644",
                    "rtype": "A",
                    "content": "1.2.3.4",
                    "ttl": "3600",
                    "local_part": "x",
                    "password": "long enough pw",
                    "quota_mb": "10",
                    "address": "x@secret-shop.example.com",
                },
            )
            # then both are 404 (or 405 for a GET-only page) and never show her domain
            assert get.status_code in (404, 405), (url, get.status_code)
            assert post.status_code in (404, 405), (url, post.status_code)
            assert b"secret-shop" not in get.content + post.content


def test_the_same_urls_work_for_the_owner(client, owner, customer, plan, node):
    # The negative test above only means something if the owner reaches these pages.
    service = make_service(customer, plan, node, domain="secret-shop.example.com")
    operation = make_operation(service)
    client.force_login(owner)
    for name in ("service", "operation_progress"):
        kwargs = {"service_id": service.pk}
        if name == "operation_progress":
            kwargs["operation_id"] = operation.pk
        assert client.get(reverse(f"panel:{name}", kwargs=kwargs)).status_code == 200


def test_another_services_operation_is_404(client, owner, customer, plan, node):
    # given two of Olivia's services: an operation is only found under its own service
    one = make_service(customer, plan, node)
    two = make_service(customer, plan, node)
    op = make_operation(two)
    client.force_login(owner)
    url = reverse("panel:operation_progress", args=[one.pk, op.pk])
    assert client.get(url).status_code == 404


def test_signed_out_visitors_are_sent_to_sign_in(client, customer, plan, node):
    service = make_service(customer, plan, node)
    response = client.get(reverse("panel:service", args=[service.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_forms_need_the_csrf_token(owner, customer, plan, node):
    # given the owner with a client that enforces CSRF like a browser
    from django.test import Client

    service = make_service(customer, plan, node)
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    # when a file action is posted without the token / then it is refused
    url = reverse("panel:file_action", args=[service.pk, "mkdir"])
    assert client.post(url, {"name": "x"}).status_code == 403
    assert client.post(reverse("panel:impersonation_stop")).status_code == 403


def test_owner_actions_with_the_same_posts_reach_the_views(client, owner, customer, plan, node):
    # The stranger's 404s above are only meaningful if these actions exist for the owner:
    # a bad DNS value is refused next to its field (400), not "not found".
    service = make_service(customer, plan, node, domain="secret-shop.example.com")
    client.force_login(owner)
    url = reverse("panel:resource_action", args=[service.pk, "dns-add"])
    response = client.post(url, {"name": "www", "rtype": "A", "content": "not-an-ip", "ttl": 3600})
    assert response.status_code == 400
    body = response.content.decode()
    assert 'id="id_dns_content-errors"' in body and "not valid A data" in body
