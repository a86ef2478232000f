"""The daily billing run: renewals, card charges with retries, reminders, overdue marking,
suspension, termination, unsuspension and the sweep of paid orders not yet provisioned.

``billing_run(today=...)`` runs once per day (a second call the same day returns the recorded
run), under a lock so that two copies never overlap. Each step is idempotent on its own:
renewal invoices are unique per subscription and period, charge attempts per invoice and
number (with the processor's idempotency key), e-mails per key. Killed midway and started
again, it finishes the day's work without doing any of it twice.
"""

from __future__ import annotations

import datetime as dt
import logging
import zlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q, Sum
from django.utils import timezone

from billing.gateways import stripe as stripe_gateway
from billing.gateways.base import GatewayError
from billing.models import (
    ZERO,
    Addon,
    AddonPrice,
    BillingRun,
    BillingSettings,
    ChargeAttempt,
    Coupon,
    CreditEntry,
    GatewayCustomer,
    Invoice,
    InvoiceLine,
    Order,
    Payment,
    Subscription,
    TaxRate,
)
from billing.money import money
from billing.notifications import Mail, notify, notify_many
from billing.selectors import cycle_end
from billing.services import (
    bill_to,
    credit_note_issue,
    document_numbers_allocate,
    order_fulfil,
    payment_record,
    subscription_plan_apply,
    subscription_restore,
    subscription_terminate,
)
from billing.taxes import tax_decide, tax_rates_by_country
from billing.vat import tax_id_recheck_run
from provisioning import services as provisioning
from provisioning.errors import ProvisioningRefused
from provisioning.models import Service, SuspensionHold

logger = logging.getLogger(__name__)

LOCK_KEY = zlib.crc32(b"hostwright.billing_run")
BATCH = 1000


class RunLocked(Exception):
    """Another copy of the daily run holds the lock."""


@contextmanager
def run_lock() -> Iterator[None]:
    """One copy at a time: a PostgreSQL advisory lock (released if the process dies), or a
    cache lock on the embedded SQLite setup."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
            (got,) = cursor.fetchone() or (False,)
        if not got:
            raise RunLocked("another billing run is in progress")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
    else:
        if not cache.add("billing-run-lock", "1", timeout=6 * 3600):
            raise RunLocked("another billing run is in progress")
        try:
            yield
        finally:
            cache.delete("billing-run-lock")


def billing_run(*, today: dt.date | None = None, force: bool = False) -> BillingRun:
    """Do the day's billing work once and record it. ``force`` repeats a completed day."""
    today = today or timezone.localdate()
    with run_lock():
        run, created = BillingRun.objects.get_or_create(run_date=today)
        if not created:
            if run.status == BillingRun.Status.COMPLETED and not force:
                return run
            # An earlier copy died or failed midway (or staff force a repeat): carry on.
            run.attempts += 1
            run.status = BillingRun.Status.RUNNING
            run.error = ""
            run.save(update_fields=["attempts", "status", "error"])
        counts: Counter[str] = Counter()
        try:
            config = BillingSettings.load()
            # Before invoicing: an id VIES could not confirm yesterday may be confirmed today.
            counts["vat_ids_checked"] = tax_id_recheck_run(today=today)
            counts["renewal_invoices"] = renewals_issue(today=today, config=config)
            counts["cancelled_at_term_end"] = term_end_cancellations(today=today)
            counts.update(charges_run(today=today, config=config))
            counts["overdue_marked"] = overdue_mark(today=today)
            counts["reminders"] = reminders_send(today=today, config=config)
            counts["suspended"] = suspensions_run(today=today, config=config)
            counts["terminated"] = terminations_run(today=today, config=config)
            counts["unsuspended"] = unsuspensions_run(today=today)
            # Suspensions and unsuspensions whose operation failed, or that waited for one
            # that never reported its end, start again here.
            counts["holds_enforced"] = provisioning.services_holds_catch_up()
            counts["orders_fulfilled"] = orders_sweep()
            counts["orders_expired"] = unpaid_orders_expire(today=today, config=config)
            counts["plan_changes_applied"] = plan_changes_sweep()
        except Exception as exc:
            run.status = BillingRun.Status.FAILED
            run.error = f"{exc.__class__.__name__}: {exc}"
            run.counts = dict(counts)
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "error", "counts", "finished_at"])
            raise
        previous = {k: v for k, v in (run.counts or {}).items() if isinstance(v, int)}
        if not created and not force:
            # A resumed day: keep what the earlier attempt did next to what this one did.
            counts = Counter(previous) + counts
        run.counts = {k: counts.get(k, 0) for k in sorted(set(counts) | set(previous))}
        run.status = BillingRun.Status.COMPLETED
        run.finished_at = timezone.now()
        run.save(update_fields=["counts", "status", "finished_at"])
        return run


# -- renewals ----------------------------------------------------------------------------------


def renewals_due(*, today: dt.date, config: BillingSettings) -> list[int]:
    horizon = today + dt.timedelta(days=config.renewal_days_before)
    already = Invoice.objects.filter(
        subscription=OuterRef("pk"),
        kind=Invoice.Kind.RENEWAL,
        period_start=OuterRef("next_due_date"),
    )
    return list(
        Subscription.objects.filter(
            state=Subscription.State.ACTIVE,
            auto_renew=True,
            cancel_at_period_end=False,
            next_due_date__lte=horizon,
            service__state__in=[Service.State.ACTIVE, Service.State.SUSPENDED],
        )
        .filter(~Exists(already))
        .order_by("id")
        .values_list("id", flat=True)
    )


def renewals_issue(*, today: dt.date, config: BillingSettings) -> int:
    """Issue renewal invoices for subscriptions due within ``renewal_days_before``.

    Set-based, a thousand at a time: one lock of the number series per batch, invoices and
    lines inserted in bulk, credit applied only where a balance exists.
    """
    ids = renewals_due(today=today, config=config)
    rates = tax_rates_by_country()
    issued = 0
    for start in range(0, len(ids), BATCH):
        issued += _renewal_batch(ids[start : start + BATCH], today=today, rates=rates)
    return issued


@transaction.atomic
def _renewal_batch(ids: list[int], *, today: dt.date, rates: dict[str, TaxRate]) -> int:
    subs = list(
        Subscription.objects.select_for_update(of=("self",))
        .filter(pk__in=ids, state=Subscription.State.ACTIVE)
        .select_related("customer", "plan__product")
        .order_by("id")
    )
    if not subs:
        return 0
    # The add-ons of the whole batch in one query. (prefetch_related("addons") built a
    # queryset per subscription to attach its rows: a third of a batch's time, though
    # almost no subscription has an add-on.)
    through = Subscription.addons.through
    sub_addons: dict[int, list[Addon]] = {}
    rows = (
        through.objects.filter(subscription_id__in=[sub.pk for sub in subs])
        .select_related("addon")
        .order_by("addon__position", "addon__id")  # the add-ons' own order, as before
    )
    for row in rows:
        sub_addons.setdefault(row.subscription_id, []).append(row.addon)
    addon_ids = {addon.pk for found in sub_addons.values() for addon in found}
    addon_price = {
        (row.addon_id, row.cycle, row.currency): row.amount
        for row in AddonPrice.objects.filter(addon_id__in=addon_ids)
    }
    numbers = document_numbers_allocate(prefix="INV", year=today.year, count=len(subs))
    invoices: list[Invoice] = []
    lines: list[list[InvoiceLine]] = []
    for sub, number in zip(subs, numbers, strict=True):
        end = cycle_end(sub.next_due_date, sub.cycle)
        tax = tax_decide(customer=sub.customer, rates=rates)
        sub_lines = []
        addon_sum = ZERO
        for addon in sub_addons.get(sub.pk, []):
            amount = addon_price.get((addon.pk, sub.cycle, sub.currency), ZERO)
            addon_sum += amount
            sub_lines.append((f"{addon.name}", amount))
        # The plan line carries the recurring amount the customer agreed to, less addons.
        plan_amount = sub.amount - addon_sum
        sub_lines.insert(
            0,
            (
                f"{sub.plan} ({sub.get_cycle_display().lower()}), {sub.next_due_date} to {end}",
                plan_amount,
            ),
        )
        subtotal = money(sum((a for _, a in sub_lines), ZERO), sub.currency)
        tax_total = money(subtotal * tax.rate / 100, sub.currency)
        invoices.append(
            Invoice(
                customer=sub.customer,
                kind=Invoice.Kind.RENEWAL,
                state=Invoice.State.ISSUED,
                number=number,
                currency=sub.currency,
                subtotal=subtotal,
                tax_rate=tax.rate,
                tax_total=tax_total,
                total=subtotal + tax_total,
                reverse_charge=tax.reverse_charge,
                tax_note=tax.note[:300],
                tax_check=tax.check,
                bill_to=bill_to(sub.customer),
                issue_date=today,
                due_date=sub.next_due_date,
                subscription=sub,
                period_start=sub.next_due_date,
                period_end=end,
            )
        )
        lines.append(
            [
                InvoiceLine(
                    position=i,
                    description=desc,
                    unit_amount=amount,
                    amount=amount,
                    period_start=sub.next_due_date,
                    period_end=end,
                )
                for i, (desc, amount) in enumerate(sub_lines)
            ]
        )
    Invoice.objects.bulk_create(invoices)
    all_lines = []
    for invoice, invoice_lines in zip(invoices, lines, strict=True):
        for line in invoice_lines:
            line.invoice = invoice
            all_lines.append(line)
    InvoiceLine.objects.bulk_create(all_lines)
    _renewal_credit(invoices)
    notify_many(
        [
            Mail(
                key=f"invoice-issued-{inv.pk}",
                customer_id=inv.customer_id,
                kind="invoice_issued",
                context={
                    "number": inv.number,
                    "total": inv.total,
                    "currency": inv.currency,
                    "due_date": inv.due_date,
                    "invoice_id": inv.pk,
                    "auto_charge": sub.payment_method_id is not None,
                },
            )
            for inv, sub in zip(invoices, subs, strict=True)
        ]
    )
    return len(invoices)


def _renewal_credit(invoices: list[Invoice]) -> None:
    """Account credit pays new invoices first; only customers with a balance cost queries."""
    from billing.services.invoices import _credit_apply, _invoice_settle

    customer_ids = {inv.customer_id for inv in invoices}
    with_credit = set(
        CreditEntry.objects.filter(customer_id__in=customer_ids)
        .values("customer_id", "currency")
        .annotate(balance=Sum("amount"))
        .filter(balance__gt=0)
        .values_list("customer_id", flat=True)
    )
    for invoice in invoices:
        if invoice.customer_id in with_credit and _credit_apply(invoice=invoice):
            invoice._was_issued = True
            if invoice.amount_due == 0:
                _invoice_settle(invoice=invoice, actor=None)


def term_end_cancellations(*, today: dt.date) -> int:
    done = 0
    ids = Subscription.objects.filter(
        state=Subscription.State.ACTIVE, cancel_at_period_end=True, next_due_date__lte=today
    ).values_list("id", flat=True)
    for sub_id in list(ids):
        with transaction.atomic():
            sub = Subscription.objects.select_for_update().get(pk=sub_id)
            if sub.state != Subscription.State.ACTIVE:
                continue
            try:
                subscription_terminate(
                    subscription=sub, actor=None, reason="Cancelled at the end of the term"
                )
            except ProvisioningRefused as exc:
                logger.warning("subscription %s not terminated yet: %s", sub_id, exc)
                continue
            notify(
                key=f"terminated-{sub.pk}",
                customer=sub.customer,
                kind="terminated",
                domain=sub.service.domain,
                number="",
            )
            done += 1
    return done


# -- charges -----------------------------------------------------------------------------------


def charges_run(*, today: dt.date, config: BillingSettings) -> Counter[str]:
    """Charge saved cards for due invoices, one attempt per invoice per scheduled day."""
    schedule = BillingSettings.days(config.charge_retry_days)
    counts: Counter[str] = Counter()
    candidates = (
        Invoice.objects.filter(
            state__in=Invoice.OPEN_STATES,
            due_date__lte=today,
            subscription__payment_method__isnull=False,
            subscription__state=Subscription.State.ACTIVE,
        )
        .select_related("subscription__payment_method", "customer")
        .prefetch_related("charge_attempts")
        .order_by("due_date", "id")
    )
    for invoice in candidates:
        attempts = sorted(invoice.charge_attempts.all(), key=lambda a: a.number)
        pending = next((a for a in attempts if a.status == ChargeAttempt.Status.PENDING), None)
        if pending is None:
            number = len(attempts)
            if number >= len(schedule) or invoice.due_date is None:
                continue
            if today < invoice.due_date + dt.timedelta(days=schedule[number]):
                continue
            if any(a.run_date == today for a in attempts):
                continue
            # Written and committed before the card is touched: a crash after this line
            # leaves a pending attempt that the next run repeats with the same key.
            pending = ChargeAttempt.objects.create(
                invoice=invoice,
                number=number,
                run_date=today,
                idempotency_key=f"renewal-{invoice.pk}-{number}",
            )
        counts[_charge(invoice=invoice, attempt=pending, schedule=schedule)] += 1
    return counts


def _charge(*, invoice: Invoice, attempt: ChargeAttempt, schedule: list[int]) -> str:
    sub = invoice.subscription
    assert sub is not None and sub.payment_method is not None
    customer_ref = (
        GatewayCustomer.objects.filter(customer_id=invoice.customer_id)
        .values_list("stripe_customer_id", flat=True)
        .first()
    )
    # The customer may have paid another way since the scan: charge only what is still due.
    invoice.refresh_from_db(fields=["state", "amount_paid", "amount_credited"])
    amount = invoice.amount_due if invoice.is_open else ZERO
    if amount <= 0:
        ChargeAttempt.objects.filter(pk=attempt.pk).update(status=ChargeAttempt.Status.SUCCEEDED)
        return "charges_skipped"
    try:
        result = stripe_gateway.StripeGateway().charge(
            customer_ref=customer_ref or "",
            payment_method_ref=sub.payment_method.external_id,
            amount=amount,
            currency=invoice.currency,
            idempotency_key=attempt.idempotency_key,
            metadata={"invoice_id": str(invoice.pk), "attempt": str(attempt.number)},
        )
    except GatewayError as exc:
        if not exc.permanent:
            # The processor could not be reached: the attempt stays pending for the next run.
            ChargeAttempt.objects.filter(pk=attempt.pk).update(error=exc.message)
            return "charges_deferred"
        ChargeAttempt.objects.filter(pk=attempt.pk).update(
            status=ChargeAttempt.Status.FAILED, error=exc.message
        )
        _charge_failed_mail(invoice=invoice, attempt=attempt, error=exc.message, schedule=schedule)
        return "charges_failed"
    if result.ok:
        with transaction.atomic():
            payment_record(
                invoice=invoice,
                amount=result.amount,
                currency=result.currency,
                gateway=Payment.Gateway.STRIPE,
                external_id=result.external_id,
                reference=f"renewal charge {attempt.number + 1}",
            )
            ChargeAttempt.objects.filter(pk=attempt.pk).update(
                status=ChargeAttempt.Status.SUCCEEDED, external_id=result.external_id
            )
        return "charges_succeeded"
    with transaction.atomic():
        ChargeAttempt.objects.filter(pk=attempt.pk).update(
            status=ChargeAttempt.Status.FAILED, external_id=result.external_id, error=result.error
        )
        _charge_failed_mail(invoice=invoice, attempt=attempt, error=result.error, schedule=schedule)
    return "charges_failed"


def _charge_failed_mail(
    *, invoice: Invoice, attempt: ChargeAttempt, error: str, schedule: list[int]
) -> None:
    next_try = None
    if attempt.number + 1 < len(schedule) and invoice.due_date is not None:
        next_try = invoice.due_date + dt.timedelta(days=schedule[attempt.number + 1])
    notify(
        key=f"payment-failed-{invoice.pk}-{attempt.number}",
        customer=invoice.customer,
        kind="payment_failed",
        number=invoice.number,
        amount=invoice.amount_due,
        currency=invoice.currency,
        error=error,
        next_try=next_try,
        invoice_id=invoice.pk,
    )


# -- dunning -----------------------------------------------------------------------------------


def overdue_mark(*, today: dt.date) -> int:
    """Issued invoices past their due date become overdue (one statement)."""
    return Invoice.objects.filter(state=Invoice.State.ISSUED, due_date__lt=today).update(
        state=Invoice.State.OVERDUE, overdue_at=timezone.now()
    )


def reminders_send(*, today: dt.date, config: BillingSettings) -> int:
    mails: list[Mail] = []
    before = BillingSettings.days(config.reminder_days_before)
    after = BillingSettings.days(config.reminder_days_after)
    wanted = [(d, "reminder_before", today + dt.timedelta(days=d)) for d in before]
    wanted += [(d, "reminder_after", today - dt.timedelta(days=d)) for d in after]
    for days, kind, due in wanted:
        for invoice in Invoice.objects.filter(state__in=Invoice.OPEN_STATES, due_date=due).only(
            "id",
            "customer_id",
            "number",
            "total",
            "amount_paid",
            "amount_credited",
            "currency",
            "due_date",
            "kind",
        ):
            mails.append(
                Mail(
                    key=f"{kind}-{invoice.pk}-{days}",
                    customer_id=invoice.customer_id,
                    kind=kind,
                    context={
                        "number": invoice.number,
                        "amount": invoice.amount_due,
                        "currency": invoice.currency,
                        "due_date": invoice.due_date,
                        "invoice_id": invoice.pk,
                        "grace_days": config.grace_days,
                        "is_order": invoice.kind == Invoice.Kind.ORDER,
                        "expire_days": config.terminate_after_days,
                    },
                )
            )
    with transaction.atomic():
        return notify_many(mails)


def _oldest_unpaid(sub_id: int) -> Invoice | None:
    return (
        Invoice.objects.filter(subscription_id=sub_id, state__in=Invoice.OPEN_STATES)
        .order_by("due_date", "id")
        .first()
    )


def suspensions_run(*, today: dt.date, config: BillingSettings) -> int:
    """Suspend (reason: non-payment) services with an invoice unpaid past the grace days."""
    limit = today - dt.timedelta(days=config.grace_days)
    unpaid = Invoice.objects.filter(
        subscription=OuterRef("pk"), state__in=Invoice.OPEN_STATES, due_date__lte=limit
    )
    ids = list(
        Subscription.objects.filter(state=Subscription.State.ACTIVE)
        .filter(Exists(unpaid))
        .filter(service__state__in=[Service.State.ACTIVE, Service.State.SUSPENDED])
        .exclude(
            Exists(
                SuspensionHold.objects.filter(
                    service=OuterRef("service"), reason="non_payment", lifted_at__isnull=True
                )
            )
        )
        .values_list("id", flat=True)
    )
    done = 0
    for sub_id in ids:
        with transaction.atomic():
            sub = Subscription.objects.select_for_update().select_related("service").get(pk=sub_id)
            # A payment may have landed since the scan; payments lock this row too.
            if not Invoice.objects.filter(
                subscription=sub, state__in=Invoice.OPEN_STATES, due_date__lte=limit
            ).exists():
                continue
            service = sub.service
            try:
                provisioning.service_suspend(service=service, reason="non_payment")
            except ProvisioningRefused as exc:
                logger.warning("service %s not suspended yet: %s", service.pk, exc)
                continue
            invoice = _oldest_unpaid(sub_id)
            notify(
                key=f"suspended-{sub.pk}-{invoice.pk if invoice else 0}",
                customer=sub.customer,
                kind="suspended",
                domain=service.domain,
                number=invoice.number if invoice else "",
                invoice_id=invoice.pk if invoice else "",
                terminate_on=(
                    invoice.due_date + dt.timedelta(days=config.terminate_after_days)
                    if invoice and invoice.due_date
                    else ""
                ),
            )
            done += 1
    return done


def terminations_run(*, today: dt.date, config: BillingSettings) -> int:
    """Close services whose invoice stayed unpaid ``terminate_after_days`` past due."""
    limit = today - dt.timedelta(days=config.terminate_after_days)
    unpaid = Invoice.objects.filter(
        subscription=OuterRef("pk"), state__in=Invoice.OPEN_STATES, due_date__lte=limit
    )
    ids = list(
        Subscription.objects.filter(state=Subscription.State.ACTIVE)
        .filter(Exists(unpaid))
        .values_list("id", flat=True)
    )
    done = 0
    for sub_id in ids:
        with transaction.atomic():
            sub = Subscription.objects.select_for_update().select_related("service").get(pk=sub_id)
            if (
                sub.state != Subscription.State.ACTIVE
                or not Invoice.objects.filter(
                    subscription=sub, state__in=Invoice.OPEN_STATES, due_date__lte=limit
                ).exists()
            ):
                continue
            invoice = _oldest_unpaid(sub_id)
            try:
                subscription_terminate(
                    subscription=sub, actor=None, reason="Unpaid past the termination date"
                )
            except ProvisioningRefused as exc:
                logger.warning("service %s not terminated yet: %s", sub.service_id, exc)
                continue
            notify(
                key=f"terminated-{sub.pk}",
                customer=sub.customer,
                kind="terminated",
                domain=sub.service.domain,
                number=invoice.number if invoice else "",
            )
            done += 1
    return done


def unsuspensions_run(*, today: dt.date) -> int:
    """Catch-up for payments whose unsuspension did not go through at payment time."""
    late = Invoice.objects.filter(
        subscription=OuterRef("pk"), state__in=Invoice.OPEN_STATES, due_date__lt=today
    )
    ids = list(
        Subscription.objects.filter(state=Subscription.State.ACTIVE)
        .filter(
            Exists(
                SuspensionHold.objects.filter(
                    service=OuterRef("service"), reason="non_payment", lifted_at__isnull=True
                )
            )
        )
        .filter(~Exists(late))
        .values_list("id", flat=True)
    )
    done = 0
    for sub_id in ids:
        try:
            done += subscription_restore(subscription_id=sub_id, today=today)
        except ProvisioningRefused as exc:
            logger.warning("subscription %s not unsuspended yet: %s", sub_id, exc)
    return done


def unpaid_orders_expire(*, today: dt.date, config: BillingSettings) -> int:
    """Orders never paid within ``terminate_after_days`` are cancelled: their invoice by a
    credit note, the order void, the coupon redemption given back."""
    limit = today - dt.timedelta(days=config.terminate_after_days)
    done = 0
    for invoice in Invoice.objects.filter(
        kind=Invoice.Kind.ORDER, state__in=Invoice.OPEN_STATES, due_date__lte=limit
    ).exclude(amount_paid__gt=0):
        if invoice.order_id is None:
            continue
        with transaction.atomic():
            order = Order.objects.select_for_update().get(pk=invoice.order_id)
            if order.state != Order.State.ISSUED:
                continue
            credit_note_issue(
                invoice=invoice,
                amount=invoice.amount_due,
                reason="Order not paid in time",
                disposition="cancel",
                today=today,
            )
            order.void()
            order.save(update_fields=["state"])
            if order.coupon_id is not None:
                Coupon.objects.filter(pk=order.coupon_id, times_redeemed__gt=0).update(
                    times_redeemed=F("times_redeemed") - 1
                )
            done += 1
    return done


def orders_sweep() -> int:
    """Paid orders that never reached the provisioning engine (the outbox's second chance)."""
    done = 0
    for order_id in Order.objects.filter(
        state=Order.State.PAID, fulfilled_at__isnull=True
    ).values_list("id", flat=True):
        done += order_fulfil(order_id=order_id) is not None
    return done


def plan_changes_sweep() -> int:
    done = 0
    for invoice_id in (
        Invoice.objects.filter(kind=Invoice.Kind.PLAN_CHANGE, state=Invoice.State.PAID)
        .exclude(Q(target_plan__isnull=True) | Q(subscription__plan=F("target_plan")))
        .values_list("id", flat=True)
    ):
        try:
            done += subscription_plan_apply(invoice_id=invoice_id)
        except ProvisioningRefused as exc:
            logger.warning("plan change of invoice %s not applied yet: %s", invoice_id, exc)
    return done
