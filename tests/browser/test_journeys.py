"""The main journeys in a real browser: Debian's Chromium driven by Playwright, against a live
server, the real Celery worker and the real test node.

A customer signs up (confirming the address from the e-mail), buys a plan on the storefront,
pays on the Stripe stand-in's hosted page, watches the account being built step by step,
sees the site live, adds a DNS record, creates a mailbox, uploads a file and opens a ticket;
an agent with two-factor authentication answers it in the admin; the customer reads the
answer. Screenshots of the main pages at 1280 and 390 pixels wide are written to
``test-artifacts/screenshots/``.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
    yield_hotp_counters_from_time,
)
from django.core import mail

from billing.models import Plan, Price
from provisioning.models import Service
from provisioning.resources import dns as hwdns
from support.models import Department, Ticket
from tests.billing.conftest import standin_module
from tests.factories import PlanFactory, UserFactory
from tests.node.harness import http_get

pytestmark = [
    pytest.mark.browser,
    pytest.mark.node,
    pytest.mark.worker,
    # (the accounts the journey builds are terminated at its end)
    pytest.mark.usefixtures("services_terminated_after"),
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WEBHOOK_SECRET = "whsec_browser"
PASSWORD = "a long enough passphrase"
# Provisioning on the shared test node takes seconds; the browser waits up to this long.
PROVISION_MS = 240_000


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: `make services` installs it")
    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are
    # plain synchronous code all the same.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def stripe_live(live_server, settings):
    """The stand-in, posting its signed events to the live server like Stripe would."""
    server, state = standin_module.serve(
        webhook_url=f"{live_server.url}/billing/webhooks/stripe/", webhook_secret=WEBHOOK_SECRET
    )
    settings.STRIPE_API_BASE = state.base_url
    settings.STRIPE_SECRET_KEY = "sk_test_browser"
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    yield state
    server.shutdown()
    import stripe

    stripe.api_base = "https://api.stripe.com"


@pytest.fixture
def catalog(db) -> Plan:
    plan = PlanFactory.create(
        name="Starter", slug="starter", php_workers=2, memory_mb=256, processes=40, mailboxes=5
    )
    Price.objects.create(plan=plan, cycle="monthly", currency="EUR", amount=Decimal("9.00"))
    Price.objects.create(plan=plan, cycle="annual", currency="EUR", amount=Decimal("90.00"))
    bigger = PlanFactory.create(name="Business", slug="business", disk_mb=10_000, mailboxes=50)
    Price.objects.create(plan=bigger, cycle="monthly", currency="EUR", amount=Decimal("24.00"))
    Department.objects.create(name="Technical support", email="tech@hosting.example")
    return plan


UNLABELLED_JS = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(el => !['hidden', 'submit', 'button'].includes(el.type))
  .filter(el => !((el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]'))
                  || el.closest('label') || el.getAttribute('aria-label')
                  || el.getAttribute('aria-labelledby')))
  .map(el => el.outerHTML.slice(0, 160))"""


WIDE_JS = """() => [...document.querySelectorAll('body *')]
  .filter(el => el.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(0, 8)
  .map(el => el.tagName + '.' + el.className + ' ' + el.getBoundingClientRect().right)"""


# Text below WCAG AA contrast: 4.5:1, or 3:1 for large text. Disabled controls are exempt.
LOW_CONTRAST_JS = """() => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => v / 255)
    .map(c => c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4)
    .reduce((sum, c, i) => sum + c * [0.2126, 0.7152, 0.0722][i], 0);
  const background = el => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || c[3] > 0.5) return c;
    }
    return [255, 255, 255];
  };
  const found = [];
  for (const el of document.querySelectorAll('body *')) {
    if (el.closest('[disabled], .code-layer, [aria-hidden=true]')) continue;
    const text = [...el.childNodes].filter(n => n.nodeType === 3)
      .map(n => n.textContent.trim()).join('');
    if (!text || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    const fg = rgb(style.color);
    if (fg.length === 4 && fg[3] < 0.5) continue;
    const [a, b] = [lum(fg), lum(background(el))].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight, 10) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    if (ratio < (large ? 3 : 4.5)) found.push(text.slice(0, 40) + ' ' + ratio.toFixed(2));
  }
  return found.slice(0, 10);
}"""


DUPLICATE_IDS_JS = """() => {
  const ids = [...document.querySelectorAll('[id]')].map(el => el.id);
  return [...new Set(ids.filter((id, i) => ids.indexOf(id) !== i))];
}"""


def shoot(page, name: str, *, check: bool = True) -> None:
    """The page at desktop and phone width, full length; on every page, check that no two
    elements share an id (a label must point at its own field); on the panel's own pages,
    also that every field has a label and that nothing is wider than a 390 px phone."""
    assert page.evaluate(DUPLICATE_IDS_JS) == [], f"{name}: ids used twice"
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width, label in ((1280, "desktop"), (390, "phone")):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(SHOTS / f"{name}-{label}.png"), full_page=True)
        if check:
            assert page.evaluate(UNLABELLED_JS) == [], f"{name}: fields without a label"
            assert page.evaluate(LOW_CONTRAST_JS) == [], f"{name}: text with low contrast"
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            wide = page.evaluate(WIDE_JS) if overflow > 1 else []
            assert overflow <= 1, f"{name} is {overflow} px wider than {width} px: {wide}"
    page.set_viewport_size({"width": 1280, "height": 900})


def current_code(secret: str) -> str:
    counters = list(yield_hotp_counters_from_time())
    return format_hotp_value(hotp_value(secret, counters[len(counters) // 2]))


def wait_finished(page, *, timeout: int = PROVISION_MS) -> str:
    """Wait until the live progress box on the page shows a final state; return it."""
    page.wait_for_selector(
        "#op-progress[data-state=completed], #op-progress[data-state=failed], "
        "#op-progress[data-state=rolled_back]",
        timeout=timeout,
    )
    return page.get_attribute("#op-progress", "data-state") or ""


def test_customer_journey_and_agent_answer(
    browser, live_server, stripe_live, catalog, worker, hosting_node, tmp_path
):
    base = live_server.url
    email = f"dana-{uuid.uuid4().hex[:8]}@example.com"
    domain = f"dana-{uuid.uuid4().hex[:6]}.example"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)

    # the page checks catch what they look for (so a clean run means something)
    page.set_content('<p style="color:#aaa;background:#fff">faint</p><input id="nolabel">')
    assert page.evaluate(LOW_CONTRAST_JS) == ["faint 2.32"]
    assert len(page.evaluate(UNLABELLED_JS)) == 1
    page.set_content('<p id="twice"></p><input id="twice"><b id="once"></b>')
    assert page.evaluate(DUPLICATE_IDS_JS) == ["twice"]

    # --- the storefront, signed out
    page.goto(f"{base}/pricing/")
    assert page.get_by_role("heading", name="Starter").count() >= 1
    shoot(page, "pricing")

    # --- sign up, then confirm the address from the e-mail
    page.goto(f"{base}/accounts/signup/")
    page.fill("input[name=full_name]", "Dana Developer")
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    # the country is a list, starting at the seller's country
    assert page.locator("select[name=country]").input_value() == "DE"
    page.select_option("select[name=country]", "AT")
    shoot(page, "signup", check=False)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_load_state()
    message = next(m for m in reversed(mail.outbox) if email in m.to)
    link = re.search(r"https?://[^/\s]+(/accounts/confirm-email/\S+)", str(message.body))
    assert link is not None, message.body
    page.goto(base + link.group(1))
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_load_state()
    # signed in on confirmation: the dashboard greets the new customer
    page.goto(f"{base}/")
    assert "Welcome, Dana" in page.content()
    shoot(page, "dashboard-empty")

    # --- buy the plan: domain and cycle, order summary, card on the processor's page
    page.goto(f"{base}/order/starter/")
    page.fill("input[name=domain]", domain)
    page.check("input[name=cycle][value=monthly]")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(re.compile(r"/checkout/"))
    shoot(page, "checkout")
    page.get_by_role("button", name=re.compile("Place order and pay")).click()
    page.wait_for_url(re.compile(r"/billing/invoices/\d+/"))
    shoot(page, "invoice")
    page.get_by_role("button", name=re.compile("by card")).click()
    page.wait_for_url(re.compile(r"/pay/"))
    page.fill("input[name=card]", "4242 4242 4242 4242")
    page.locator("button[type=submit]").first.click()
    page.wait_for_url(re.compile(r"/billing/invoices/\d+/\?paid=1"))
    # right after paying the invoice never reads Open with a live Pay button
    assert page.inner_text(".invoice-head .badge") in ("Payment processing", "Paid")
    assert page.get_by_role("button", name=re.compile("by card")).count() == 0
    shoot(page, "invoice-paying", check=False)

    # --- the invoice page updates itself once Stripe's event has been applied (no reload)
    # and leads on to the new account, to watch it being built
    watch = page.get_by_role("link", name="Watch it being set up")
    watch.wait_for(timeout=20_000)
    assert "Payment received" in page.inner_text("#invoice-page")
    assert "Paid" in page.inner_text(".invoice-head")
    service = Service.objects.get(domain=domain)
    watch.click()
    page.wait_for_url(re.compile(rf"/services/{service.pk}/"))
    if page.locator("#op-progress[hx-trigger]").count():
        # Still running: the steps tick by through htmx polling on this very page.
        page.wait_for_selector(".step-done", timeout=PROVISION_MS)
        shoot(page, "service-provisioning")
    state = wait_finished(page)
    assert state == "completed", page.inner_text("#op-progress")
    assert page.locator(".step-done").count() == page.locator(".step").count()
    # the state badges follow without a reload
    page.wait_for_selector("h1 >> text=Active")
    assert "Active" in page.inner_text("#service-facts")
    shoot(page, "service")

    # --- the site is live on the node
    status, body = http_get(domain)
    assert status == 200 and domain in body

    # --- a DNS record, added from the service page and answered by the nameserver
    # the Details card wraps the domain after its dots only; the Databases box names the
    # account's database as MariaDB does; the SFTP box shows the paths its session shows
    assert "<wbr>" in page.inner_html("#service-facts .domain-name")
    assert page.locator(f'[data-database="{service.username}_main"]').count() == 1
    from panel.selectors import sftp_path

    webroot = sftp_path(service=service, home_relative="public_html")
    assert webroot in page.inner_text("#sftp")
    page.fill("#id_dns_name", "shop")
    page.select_option("#id_dns_rtype", "A")
    page.fill("#id_dns_content", "192.0.2.44")
    page.fill("#id_dns_ttl", "600")
    page.get_by_role("button", name="Add record").click()
    assert wait_finished(page) == "completed", page.inner_text("#op-progress")
    # the page refreshes itself once the change is done: the record is listed without a reload
    page.wait_for_selector("#dns >> text=192.0.2.44")
    rcode, answers, _aa = hwdns.query(f"shop.{domain}", "A", nameserver="127.0.0.1", port=5353)
    assert (rcode, answers) == ("NOERROR", ["192.0.2.44"])

    # --- a mailbox
    page.fill("#id_mailbox_local_part", "hello")
    page.fill("#id_mailbox_password", "mailbox passphrase 1")
    page.fill("#id_mailbox_quota_mb", "200")
    page.get_by_role("button", name="Create mailbox").click()
    assert wait_finished(page) == "completed", page.inner_text("#op-progress")
    page.reload()
    assert f"hello@{domain}" in page.inner_text("#mail")
    # --- SFTP on: "Turn SFTP off" is then offered, readable (the contrast check in shoot)
    page.fill("#id_sftp_password", "an sftp passphrase 1")
    page.get_by_role("button", name="Turn SFTP on").click()
    assert wait_finished(page) == "completed", page.inner_text("#op-progress")
    page.reload()
    assert page.get_by_role("button", name="Turn SFTP off").is_enabled()
    page.locator("#logs summary").first.click()
    # opening the access log loads its tail from the node: it holds the visit made above
    page.wait_for_selector("div.log#log-access")
    assert "GET / HTTP" in page.inner_text("#log-access")
    shoot(page, "service-resources")

    # --- the plan change page prices the rest of the term before anything is confirmed
    page.goto(f"{base}/services/{service.pk}/plan/")
    assert page.locator("[data-due]").count() == 1
    shoot(page, "plan-change")

    # --- a file, uploaded with the progress bar into the web root, served by the site
    page.goto(f"{base}/services/{service.pk}/files/?path=public_html")
    upload = tmp_path / "hello.html"
    upload.write_text("<h1>Uploaded from the browser</h1>\n")
    page.set_input_files("#id_file", str(upload))
    with page.expect_navigation():
        page.get_by_role("button", name="Upload", exact=True).click()
    assert page.get_by_role("link", name="hello.html").count() == 1
    shoot(page, "files")
    assert http_get(domain, "/hello.html") == (200, "<h1>Uploaded from the browser</h1>\n")
    # and edited in the highlighting editor
    page.get_by_role("link", name="Edit").first.click()
    page.wait_for_selector(".code-editor.is-highlighted .token.tag")
    shoot(page, "editor")
    page.fill("#id_content", "<h1>Edited in the panel</h1>\n")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r"/files/"))
    assert http_get(domain, "/hello.html") == (200, "<h1>Edited in the panel</h1>\n")

    # --- a ticket about the service
    page.goto(f"{base}/support/new/")
    assert page.evaluate(DUPLICATE_IDS_JS) == []
    page.fill("input[name=subject]", "How do I point my domain?")
    page.fill("textarea[name=body]", "Which nameservers should I use for my new site?")
    page.get_by_role("button", name="Send").click()
    page.wait_for_url(re.compile(r"/support/\d+/"))
    ticket = Ticket.objects.get(customer__memberships__user__email=email)

    # --- an agent with TOTP answers it in the admin, in a browser of their own
    secret = generate_totp_secret()
    agent = UserFactory.create(
        email=f"agent-{uuid.uuid4().hex[:6]}@hosting.example",
        full_name="Alex Agent",
        is_staff=True,
        is_superuser=True,
    )
    from allauth.account.models import EmailAddress

    EmailAddress.objects.create(user=agent, email=agent.email, verified=True, primary=True)
    TOTP.activate(agent, secret)
    staff_context = browser.new_context(viewport={"width": 1280, "height": 900})
    staff = staff_context.new_page()
    staff.set_default_timeout(30_000)
    staff.goto(f"{base}/accounts/login/")
    staff.fill("input[name=login]", agent.email)
    staff.fill("input[name=password]", "correct horse battery")
    staff.locator("main form button[type=submit]").first.click()
    staff.wait_for_url(re.compile(r"/accounts/2fa/authenticate/"))
    staff.fill("input[name=code]", current_code(secret))
    staff.locator("main form button[type=submit]").first.click()
    staff.wait_for_load_state()
    staff.goto(f"{base}/admin/support/ticket/{ticket.pk}/change/")
    staff.fill("#id_body", "Use ns1.hostwright.test and ns2.hostwright.test.")
    staff.locator("form.desk-reply input[type=submit]").click()
    staff.wait_for_load_state()
    staff.goto(f"{base}/admin/accounts/customer/{ticket.customer_id}/change/")
    assert domain in staff.content()
    shoot(staff, "admin-customer", check=False)  # Django admin's own layout
    # and signs in as the customer to see what they see, with the banner, then goes back
    staff.get_by_role("button", name="Log in as this customer").click()
    staff.wait_for_url(f"{base}/")
    assert "Staff view." in staff.inner_text(".impersonation")
    assert domain in staff.content()
    shoot(staff, "impersonation")
    staff.get_by_role("button", name="Back to the admin").click()
    staff.wait_for_url(re.compile(rf"/admin/accounts/customer/{ticket.customer_id}/change/"))
    staff_context.close()

    # --- the customer reads the answer
    page.goto(f"{base}/support/{ticket.pk}/")
    assert "ns1.hostwright.test" in page.content()
    shoot(page, "ticket")
    page.goto(f"{base}/")
    shoot(page, "dashboard")
    # keyboard users see where they are: every stop of the first dozen Tab presses is outlined
    for _ in range(12):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => { const s = getComputedStyle(document.activeElement);"
            " return [document.activeElement.tagName, s.outlineStyle, s.outlineWidth]; }"
        )
        assert focused[1] != "none" and focused[2] != "0px", focused
    page.goto(f"{base}/billing/invoices/")
    shoot(page, "billing")
    # the staff visit is on the customer's own activity page
    page.goto(f"{base}/account/activity/")
    assert "A member of staff signed in as" in page.content()
    assert "Alex Agent" in page.content()
    shoot(page, "activity")
    context.close()
