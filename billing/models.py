"""Billing: the catalog with prices, orders, invoices, payments, credit and automation records.

Money is always a ``Decimal`` next to a three-letter currency, rounded to that currency's own
decimals (``billing.money``). Documents that
left the building (issued invoices, credit notes) never change; corrections are new documents.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, ClassVar

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Round
from django.utils import timezone
from django_fsm import FSMField, FSMModelMixin, transition

from accounts.models import Customer, currency_code

ZERO = Decimal("0.00")


class MoneyField(models.DecimalField):
    """An amount in the currency of its row, stored with three decimals (enough for KWD).

    Read back, an amount whose third decimal is zero comes with two (10.000 as 10.00), so the
    two-decimal currencies most customers pay in show as they are written. Rounding never
    depends on this: services round with ``billing.money.money`` and the row's currency.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_digits", 15)
        kwargs.setdefault("decimal_places", 3)
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: Decimal | None, expression: Any, connection: Any) -> Any:
        if value is None:
            return value
        return trim_amount(value)


def trim_amount(value: Decimal) -> Decimal:
    """10.000 as 10.00, 1.250 as 1.25, 1.234 as 1.234: never fewer than two decimals."""
    two = value.quantize(Decimal("0.01"))
    return two if two == value else value


def money_field(**kwargs: Any) -> MoneyField:
    return MoneyField(**kwargs)


class BillingCycle(models.TextChoices):
    MONTHLY = "monthly", "Monthly"
    ANNUAL = "annual", "Annual"


CYCLE_MONTHS = {BillingCycle.MONTHLY: 1, BillingCycle.ANNUAL: 12}


class Product(models.Model):
    class Kind(models.TextChoices):
        SHARED = "shared", "Shared hosting"
        WORDPRESS = "wordpress", "WordPress hosting"

    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.SHARED)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name


class Plan(models.Model):
    """A plan's limits. Zero means "none"; prices per cycle and currency are ``Price`` rows."""

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="plans")
    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    disk_mb = models.PositiveIntegerField("disk (MB)", validators=[MinValueValidator(1)])
    bandwidth_gb = models.PositiveIntegerField("bandwidth (GB per month)")
    sites = models.PositiveSmallIntegerField(default=1)
    databases = models.PositiveSmallIntegerField(default=1)
    mailboxes = models.PositiveSmallIntegerField(default=5)
    # Mail the account may send, counted per recipient over a sliding hour (node's policy).
    mail_per_hour = models.PositiveIntegerField(
        "mail per hour (account)", default=500, validators=[MinValueValidator(1)]
    )
    mail_per_hour_mailbox = models.PositiveIntegerField(
        "mail per hour (each mailbox)", default=100, validators=[MinValueValidator(1)]
    )
    php_workers = models.PositiveSmallIntegerField(default=4, validators=[MinValueValidator(1)])
    memory_mb = models.PositiveIntegerField("memory (MB)", default=512)
    cpu_percent = models.PositiveSmallIntegerField(
        "CPU share (% of one core)", default=100, validators=[MinValueValidator(1)]
    )
    processes = models.PositiveSmallIntegerField(default=64, validators=[MinValueValidator(1)])
    io_weight = models.PositiveSmallIntegerField(
        "IO weight",
        default=100,
        validators=[MinValueValidator(1), MaxValueValidator(10000)],
        help_text="The account's share of disk time against other accounts (1-10000, "
        "100 is an even share); applied on nodes with systemd.",
    )
    cron_jobs = models.PositiveSmallIntegerField(
        "cron jobs", default=5, help_text="How many cron jobs the account may have."
    )
    dedicated_ip = models.BooleanField("includes a dedicated IP", default=False)
    shell_access = models.BooleanField(
        "includes SSH shell access",
        default=False,
        help_text="Accounts on this plan get a login shell; without it they have SFTP only.",
    )

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.product.name} {self.name}"


class Price(models.Model):
    """What a plan costs per billing cycle in one currency (net, before tax)."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="prices")
    cycle = models.CharField(max_length=10, choices=BillingCycle.choices)
    currency = models.CharField(max_length=3, validators=[currency_code])
    amount = money_field(validators=[MinValueValidator(ZERO)])

    class Meta:
        ordering = ["plan", "cycle", "currency"]
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "cycle", "currency"], name="billing_price_unique"
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="billing_price_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.plan} {self.get_cycle_display()} {self.amount} {self.currency}"


class Addon(models.Model):
    """Something bought alongside a plan and billed with it (a dedicated IP, more storage)."""

    class Kind(models.TextChoices):
        DEDICATED_IP = "dedicated_ip", "Dedicated IP address"
        EXTRA_STORAGE = "extra_storage", "Extra storage"

    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    description = models.TextField(blank=True)
    extra_disk_mb = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.name


class AddonPrice(models.Model):
    addon = models.ForeignKey(Addon, on_delete=models.CASCADE, related_name="prices")
    cycle = models.CharField(max_length=10, choices=BillingCycle.choices)
    currency = models.CharField(max_length=3, validators=[currency_code])
    amount = money_field(validators=[MinValueValidator(ZERO)])

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["addon", "cycle", "currency"], name="billing_addonprice_unique"
            ),
            models.CheckConstraint(
                condition=Q(amount__gte=0), name="billing_addonprice_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.addon} {self.cycle} {self.amount} {self.currency}"


class Coupon(models.Model):
    """A discount on the first invoice of an order: a percentage or a fixed amount."""

    class Kind(models.TextChoices):
        PERCENT = "percent", "Percent off"
        FIXED = "fixed", "Fixed amount off"

    code = models.CharField(max_length=40, unique=True, help_text="Stored in capitals.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    value = money_field(validators=[MinValueValidator(0)])
    currency = models.CharField(
        max_length=3, blank=True, help_text="Required for fixed amounts; empty for percentages."
    )
    max_redemptions = models.PositiveIntegerField(null=True, blank=True)
    times_redeemed = models.PositiveIntegerField(default=0)
    once_per_customer = models.BooleanField(default=True)
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    plans = models.ManyToManyField(Plan, blank=True, help_text="Empty: every plan.")
    is_active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(value__gt=0), name="billing_coupon_value_positive"),
            models.CheckConstraint(
                condition=Q(kind="fixed") | Q(value__lte=100), name="billing_coupon_percent_max"
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.code = self.code.strip().upper()
        super().save(*args, **kwargs)


class TaxRate(models.Model):
    """The VAT or sales tax rate charged to customers in one country (percent)."""

    country = models.CharField(max_length=2, unique=True)
    name = models.CharField(max_length=40, default="VAT")
    rate = models.DecimalField(max_digits=5, decimal_places=2, validators=[MinValueValidator(0)])
    in_eu = models.BooleanField(
        default=False, help_text="EU member: business customers with a tax id get reverse charge."
    )

    class Meta:
        ordering = ["country"]

    def __str__(self) -> str:
        return f"{self.country} {self.name} {self.rate}%"


class TaxIdCheck(models.Model):
    """One check of a customer's VAT id: its format and check digits (python-stdnum), then
    the EU's VIES service. Reverse charge applies only on the strength of a valid check of
    the id the customer has now; invoices name the check they relied on."""

    class Status(models.TextChoices):
        VALID = "valid", "Valid (confirmed by VIES)"
        INVALID = "invalid", "Not registered (VIES)"
        MALFORMED = "malformed", "Wrong format or check digits"
        UNAVAILABLE = "unavailable", "VIES did not answer"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="tax_checks")
    country = models.CharField(max_length=2, help_text="The customer's country when checked.")
    tax_id = models.CharField(max_length=40, help_text="The id in its compact form, e.g. DE…")
    status = models.CharField(max_length=12, choices=Status.choices)
    checked_at = models.DateTimeField(default=timezone.now)
    request_date = models.DateField(null=True, blank=True, help_text="VIES's date of the check.")
    consultation_number = models.CharField(
        max_length=60, blank=True, help_text="VIES's request identifier: proof of the check."
    )
    registered_name = models.CharField(max_length=300, blank=True)
    registered_address = models.TextField(blank=True)
    message = models.CharField(max_length=300, blank=True, help_text="Why, when not valid.")
    checked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-checked_at", "-id"]
        indexes = [models.Index(fields=["customer", "country", "tax_id", "-checked_at"])]

    def __str__(self) -> str:
        return f"{self.tax_id} {self.status} on {self.checked_at:%Y-%m-%d}"

    @property
    def is_valid(self) -> bool:
        return self.status == self.Status.VALID


class DocumentSeries(models.Model):
    """The counter behind gapless numbers: one row per prefix and year, locked while issuing."""

    key = models.CharField(max_length=30, unique=True)
    last_number = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key} at {self.last_number}"


class Order(FSMModelMixin, models.Model):
    """What a customer checked out: a plan with its cycle, addons and domain.

    The order row is also the outbox for provisioning: once paid, ``order_fulfil`` calls the
    provisioning engine exactly once and links the subscription it creates.
    """

    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        ISSUED = "issued", "Awaiting payment"
        PAID = "paid", "Paid"
        VOID = "void", "Cancelled"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="orders")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    cycle = models.CharField(max_length=10, choices=BillingCycle.choices)
    currency = models.CharField(max_length=3)
    domain = models.CharField(max_length=253)
    addons = models.ManyToManyField(Addon, blank=True, related_name="+")
    coupon = models.ForeignKey(Coupon, null=True, blank=True, on_delete=models.PROTECT)
    recurring_amount = money_field(
        default=ZERO, help_text="Net price per cycle after the first one (plan and addons)."
    )
    state = FSMField(default=State.DRAFT, choices=State.choices, protected=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    paid_at = models.DateTimeField(null=True, blank=True)
    fulfilled_at = models.DateTimeField(
        null=True, blank=True, help_text="When the provisioning engine took the order."
    )
    fulfil_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "fulfilled_at"])]

    def __str__(self) -> str:
        return f"Order #{self.pk} {self.plan} for {self.domain}"

    @transition(field=state, source=State.DRAFT, target=State.ISSUED)
    def issue(self) -> None:
        pass

    @transition(field=state, source=[State.DRAFT, State.ISSUED], target=State.PAID)
    def mark_paid(self, *, at: dt.datetime) -> None:
        self.paid_at = at

    @transition(field=state, source=[State.DRAFT, State.ISSUED], target=State.VOID)
    def void(self) -> None:
        pass


class Invoice(FSMModelMixin, models.Model):
    """A bill. Numbered when issued; from then on only its payment state moves."""

    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        ISSUED = "issued", "Issued"
        OVERDUE = "overdue", "Overdue"
        PAID = "paid", "Paid"
        VOID = "void", "Void"

    class Kind(models.TextChoices):
        ORDER = "order", "New order"
        RENEWAL = "renewal", "Renewal"
        PLAN_CHANGE = "plan_change", "Plan change"
        MANUAL = "manual", "Manual"

    OPEN_STATES: ClassVar[tuple[str, ...]] = (State.ISSUED, State.OVERDUE)
    # Fields that may still change once issued: how much is paid and the payment state.
    MUTABLE_AFTER_ISSUE: ClassVar[frozenset[str]] = frozenset(
        {"state", "amount_paid", "amount_credited", "paid_at", "overdue_at", "superseded"}
    )

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="invoices")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.MANUAL)
    state = FSMField(default=State.DRAFT, choices=State.choices, protected=True)
    number = models.CharField(max_length=30, unique=True, null=True, blank=True)
    currency = models.CharField(max_length=3, validators=[currency_code])
    subtotal = money_field(default=ZERO)
    tax_rate = models.DecimalField(max_digits=5, decimal_places=2, default=ZERO)
    tax_total = money_field(default=ZERO)
    total = money_field(default=ZERO)
    amount_paid = money_field(default=ZERO, help_text="Payments and credit applied.")
    amount_credited = money_field(default=ZERO, help_text="Cancelled by credit notes.")
    reverse_charge = models.BooleanField(default=False)
    tax_note = models.CharField(max_length=300, blank=True)
    tax_check = models.ForeignKey(
        TaxIdCheck,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="The VAT id check reverse charge (or charging VAT) relied on.",
    )
    # The buyer as they were when the invoice was issued.
    bill_to = models.JSONField(default=dict, blank=True)
    issue_date = models.DateField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    overdue_at = models.DateTimeField(null=True, blank=True)
    order = models.OneToOneField(
        Order, null=True, blank=True, on_delete=models.PROTECT, related_name="invoice"
    )
    subscription = models.ForeignKey(
        "Subscription",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="invoices",
    )
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)
    target_plan = models.ForeignKey(
        Plan,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="For plan changes: the plan the service moves to once this is paid.",
    )
    # A renewal invoice issued before a plan change is corrected by credit notes and replaced
    # by one at the new price; the first is then superseded, the second names it.
    superseded = models.BooleanField(default=False)
    replaces = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="replaced_by"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Rounded to the stored precision (three decimals, for currencies such as KWD):
            # SQLite (the demo) adds decimals as floats, and 12.90 + 2.45 is not 15.35 there;
            # PostgreSQL's numeric is exact either way.
            models.CheckConstraint(
                condition=Q(total=Round(models.F("subtotal") + models.F("tax_total"), 3)),
                name="billing_invoice_total_adds_up",
            ),
            models.CheckConstraint(condition=Q(total__gte=0), name="billing_invoice_total_gte0"),
            models.CheckConstraint(
                condition=Q(amount_paid__gte=0)
                & Q(amount_credited__gte=0)
                & Q(amount_paid__lte=models.F("total") - models.F("amount_credited")),
                name="billing_invoice_paid_within_total",
            ),
            models.CheckConstraint(
                condition=Q(state="draft") | Q(number__isnull=False),
                name="billing_invoice_issued_has_number",
            ),
            # One renewal invoice per subscription and period, however often the run repeats.
            models.UniqueConstraint(
                fields=["subscription", "period_start"],
                condition=Q(kind="renewal", superseded=False),
                name="billing_invoice_one_renewal_per_period",
            ),
        ]
        indexes = [
            models.Index(fields=["state", "due_date"]),
            models.Index(fields=["customer", "state"]),
        ]

    def __str__(self) -> str:
        return self.number or f"Draft invoice #{self.pk}"

    _was_issued = False

    def save(self, *args: Any, **kwargs: Any) -> None:
        # An issued invoice is a legal document: refuse any write that could alter it.
        if self.pk is not None and self._was_issued:
            fields = kwargs.get("update_fields")
            if fields is None or not set(fields) <= self.MUTABLE_AFTER_ISSUE:
                raise ValueError(
                    f"Invoice {self.number} is issued and cannot change; issue a credit note."
                )
        super().save(*args, **kwargs)
        self._was_issued = self.number is not None

    @classmethod
    def from_db(cls, *args: Any, **kwargs: Any) -> Invoice:
        instance = super().from_db(*args, **kwargs)
        instance._was_issued = instance.number is not None
        return instance

    @property
    def amount_due(self) -> Decimal:
        return self.total - self.amount_paid - self.amount_credited

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES

    @transition(field=state, source=State.DRAFT, target=State.ISSUED)
    def issue(self, *, number: str, issue_date: dt.date, due_date: dt.date) -> None:
        self.number = number
        self.issue_date = issue_date
        self.due_date = due_date

    @transition(field=state, source=[State.ISSUED, State.OVERDUE], target=State.PAID)
    def mark_paid(self, *, at: dt.datetime) -> None:
        self.paid_at = at

    @transition(field=state, source=State.ISSUED, target=State.OVERDUE)
    def mark_overdue(self, *, at: dt.datetime) -> None:
        self.overdue_at = at

    @transition(field=state, source=[State.DRAFT, State.ISSUED, State.OVERDUE], target=State.VOID)
    def void(self) -> None:
        pass


class InvoiceLine(models.Model):
    """One line of an invoice, net of tax. Discounts and prorated credits are negative lines."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField(default=0)
    description = models.CharField(max_length=300)
    quantity = models.DecimalField(
        max_digits=10, decimal_places=2, default=Decimal("1"), validators=[MinValueValidator(0)]
    )
    unit_amount = money_field()
    amount = money_field()
    period_start = models.DateField(null=True, blank=True)
    period_end = models.DateField(null=True, blank=True)

    class Meta:
        ordering = ["invoice", "position", "id"]

    def __str__(self) -> str:
        return self.description

    def save(self, *args: Any, **kwargs: Any) -> None:
        if Invoice.objects.filter(pk=self.invoice_id).exclude(state="draft").exists():
            raise ValueError("Lines of an issued invoice cannot change; issue a credit note.")
        super().save(*args, **kwargs)


class CreditNote(models.Model):
    """A correction of an issued invoice: reduces what it asks for, or gives the money back."""

    class Disposition(models.TextChoices):
        CANCEL = "cancel", "Cancels the unpaid amount"
        CREDIT = "credit", "Added to the account credit"
        REFUND = "refund", "Refunded to the payment method"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credit_notes")
    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="credit_notes")
    number = models.CharField(max_length=30, unique=True)
    currency = models.CharField(max_length=3)
    subtotal = money_field()
    tax_total = money_field()
    total = money_field()
    disposition = models.CharField(max_length=10, choices=Disposition.choices)
    reason = models.CharField(max_length=300)
    issue_date = models.DateField()
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(total__gt=0), name="billing_creditnote_positive"),
            models.CheckConstraint(
                condition=Q(total=Round(models.F("subtotal") + models.F("tax_total"), 3)),
                name="billing_creditnote_total_adds_up",
            ),
        ]

    def __str__(self) -> str:
        return self.number


class CreditEntry(models.Model):
    """One movement on a customer's account credit; the balance is the sum of the entries."""

    class Kind(models.TextChoices):
        CREDIT_NOTE = "credit_note", "Credit note"
        OVERPAYMENT = "overpayment", "Overpayment"
        PRORATION = "proration", "Unused time from a plan change"
        MANUAL = "manual", "Added by staff"
        APPLIED = "applied", "Applied to an invoice"

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="credit_entries")
    currency = models.CharField(max_length=3)
    amount = money_field(help_text="Positive adds credit, negative uses it.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="credit_entries"
    )
    credit_note = models.ForeignKey(
        CreditNote, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    memo = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "credit entries"
        constraints = [
            models.CheckConstraint(condition=~Q(amount=0), name="billing_credit_not_zero"),
        ]
        indexes = [models.Index(fields=["customer", "currency"])]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} {self.kind}"


class GatewayCustomer(models.Model):
    """The customer's id at the card processor."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, related_name="+")
    stripe_customer_id = models.CharField(max_length=100, unique=True)

    def __str__(self) -> str:
        return self.stripe_customer_id


class PaymentMethod(models.Model):
    """A card saved at the processor for charges while the customer is away."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="payment_methods")
    gateway = models.CharField(max_length=20, default="stripe")
    external_id = models.CharField(max_length=100, unique=True)
    brand = models.CharField(max_length=30, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-is_default", "-created_at"]

    def __str__(self) -> str:
        return f"{(self.brand or 'card').capitalize()} ending {self.last4 or '????'}"


class Payment(models.Model):
    """Money received for an invoice, or given back (a refund)."""

    class Gateway(models.TextChoices):
        STRIPE = "stripe", "Card (Stripe)"
        CREDIT = "credit", "Account credit"
        MANUAL = "manual", "Manual (bank transfer, cash)"

    class Kind(models.TextChoices):
        PAYMENT = "payment", "Payment"
        REFUND = "refund", "Refund"

    invoice = models.ForeignKey(Invoice, on_delete=models.PROTECT, related_name="payments")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="payments")
    gateway = models.CharField(max_length=10, choices=Gateway.choices)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PAYMENT)
    amount = money_field()
    currency = models.CharField(max_length=3)
    external_id = models.CharField(
        max_length=100, blank=True, help_text="The processor's id: recorded once, never twice."
    )
    reference = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="billing_payment_positive"),
            models.UniqueConstraint(
                fields=["gateway", "kind", "external_id"],
                condition=~Q(external_id=""),
                name="billing_payment_external_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} {self.currency} via {self.gateway}"


class ChargeAttempt(models.Model):
    """One off-session charge of a saved card for an invoice, planned by the retry schedule.

    The row is written (and committed) before the processor is called; its idempotency key
    makes a repeated call after a crash return the first result instead of charging again.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="charge_attempts")
    number = models.PositiveSmallIntegerField()
    run_date = models.DateField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    idempotency_key = models.CharField(max_length=100, unique=True)
    external_id = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["invoice", "number"]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "number"], name="billing_attempt_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.invoice} attempt {self.number}: {self.status}"


class StripeEvent(models.Model):
    """A webhook event from Stripe, stored once by its id."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored (nothing to do)"
        FAILED = "failed", "Failed (kept for staff)"

    event_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100)
    created = models.DateTimeField(help_text="When Stripe created the event.")
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RECEIVED)
    result = models.TextField(blank=True)
    deliveries = models.PositiveIntegerField(default=1)
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.type}"


class BillingSettings(models.Model):
    """The days the daily run works with. One row; staff change it in the admin."""

    renewal_days_before = models.PositiveSmallIntegerField(
        default=14, help_text="Issue renewal invoices this many days before the due date."
    )
    reminder_days_before = models.CharField(
        max_length=50, default="7,1", help_text="Remind this many days before the due date."
    )
    reminder_days_after = models.CharField(
        max_length=50, default="1,5", help_text="Remind this many days after the due date."
    )
    charge_retry_days = models.CharField(
        max_length=50,
        default="0,2,4",
        help_text="Charge saved cards on these days after the due date (0 is the due date).",
    )
    grace_days = models.PositiveSmallIntegerField(
        default=7, help_text="Suspend this many days after the due date while unpaid."
    )
    terminate_after_days = models.PositiveSmallIntegerField(
        default=30, help_text="Terminate this many days after the due date while unpaid."
    )
    order_payment_days = models.PositiveSmallIntegerField(
        default=0, help_text="Days to pay a new order's invoice."
    )

    class Meta:
        verbose_name = "billing settings"
        verbose_name_plural = "billing settings"
        constraints = [models.CheckConstraint(condition=Q(pk=1), name="billing_settings_single")]

    def __str__(self) -> str:
        return "Billing settings"

    @classmethod
    def load(cls) -> BillingSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj

    @staticmethod
    def days(value: str) -> list[int]:
        return sorted({int(part) for part in value.replace(" ", "").split(",") if part})


class BillingRun(models.Model):
    """One daily run: when, for which day, and what it did."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    run_date = models.DateField(unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=1)
    counts = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-run_date"]

    def __str__(self) -> str:
        return f"Billing run {self.run_date} ({self.status})"


class Notice(models.Model):
    """An e-mail sent to a customer, keyed so the daily run never sends the same one twice."""

    key = models.CharField(max_length=120, unique=True)
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=40)
    subject = models.CharField(max_length=200)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-sent_at"]

    def __str__(self) -> str:
        return self.key


class Subscription(FSMModelMixin, models.Model):
    """How a service is billed: cycle, recurring price, next due date, renewal choices."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        CANCELLED = "cancelled", "Cancelled"

    service = models.OneToOneField(
        "provisioning.Service", on_delete=models.PROTECT, related_name="subscription"
    )
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    addons = models.ManyToManyField(Addon, blank=True, related_name="+")
    order = models.OneToOneField(
        Order, null=True, blank=True, on_delete=models.PROTECT, related_name="subscription"
    )
    cycle = models.CharField(max_length=10, choices=BillingCycle.choices)
    currency = models.CharField(max_length=3)
    amount = money_field(help_text="Recurring net price per cycle, addons included.")
    period_start = models.DateField()
    next_due_date = models.DateField(db_index=True)
    auto_renew = models.BooleanField(default=True)
    cancel_at_period_end = models.BooleanField(default=False)
    payment_method = models.ForeignKey(
        PaymentMethod, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    state = FSMField(default=State.ACTIVE, choices=State.choices, protected=True)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["next_due_date", "id"]
        indexes = [models.Index(fields=["state", "next_due_date"])]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="billing_sub_amount_gte0"),
        ]

    def __str__(self) -> str:
        return f"{self.plan} {self.get_cycle_display()} until {self.next_due_date}"

    @transition(field=state, source=State.ACTIVE, target=State.CANCELLED)
    def cancel(self, *, at: dt.datetime) -> None:
        self.cancelled_at = at
