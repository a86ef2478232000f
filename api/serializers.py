from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.models import trim_amount
from provisioning.models import CronJob, Operation, Service, StepRun


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so a typo is an error rather than ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: ["This field is not known."] for name in unknown},
                    code="unknown_field",
                )
        return super().to_internal_value(data)


class NewCustomerSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    email = serializers.EmailField()
    company = serializers.CharField(max_length=200, required=False, allow_blank=True)
    country = serializers.RegexField(r"\A[A-Z]{2}\Z", max_length=2)
    currency = serializers.RegexField(r"\A[A-Z]{3}\Z", max_length=3, required=False)


class AccountCreateSerializer(StrictSerializer):
    plan = serializers.SlugField(help_text="The plan's slug.")
    domain = serializers.CharField(max_length=253)
    customer_id = serializers.IntegerField(required=False, min_value=1)
    customer = NewCustomerSerializer(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("customer_id" in attrs) == ("customer" in attrs):
            raise serializers.ValidationError("Give either customer_id or customer, not both.")
        return attrs


class ReasonSerializer(StrictSerializer):
    reason = serializers.ChoiceField(choices=["non_payment", "abuse", "staff"])


class EmptySerializer(StrictSerializer):
    pass


class ChangePlanSerializer(StrictSerializer):
    plan = serializers.SlugField()


class StepRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = StepRun
        fields = [
            "id",
            "step",
            "direction",
            "attempt",
            "status",
            "started_at",
            "finished_at",
            "error",
            "resources",
        ]


class OperationSerializer(serializers.ModelSerializer):
    service_id = serializers.IntegerField(read_only=True)
    url = serializers.SerializerMethodField()

    class Meta:
        model = Operation
        fields = [
            "id",
            "url",
            "service_id",
            "kind",
            "state",
            "reason",
            "created_at",
            "started_at",
            "finished_at",
        ]

    def get_url(self, obj: Operation) -> str:
        return reverse("api:provisioning-operation", args=[obj.pk])


class OperationDetailSerializer(OperationSerializer):
    steps = StepRunSerializer(many=True, read_only=True, source="step_runs")

    class Meta(OperationSerializer.Meta):
        fields = [*OperationSerializer.Meta.fields, "steps"]


class CustomerStepRunSerializer(StepRunSerializer):
    """A step as its customer sees it: what and when, not the commands or their output
    (why the operation stopped is its ``reason``, in the customer's words)."""

    class Meta(StepRunSerializer.Meta):
        fields = [f for f in StepRunSerializer.Meta.fields if f not in ("error", "resources")]


class CustomerOperationDetailSerializer(OperationSerializer):
    steps = CustomerStepRunSerializer(many=True, read_only=True, source="step_runs")

    class Meta(OperationSerializer.Meta):
        fields = [*OperationSerializer.Meta.fields, "steps"]


class ServiceSerializer(serializers.ModelSerializer):
    plan: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    node = serializers.CharField(source="node.name", default=None, read_only=True)
    ip = serializers.CharField(source="ip.address", default=None, read_only=True)

    class Meta:
        model = Service
        fields = [
            "id",
            "customer_id",
            "plan",
            "domain",
            "username",
            "state",
            "suspension_reasons",
            "node",
            "ip",
            "created_at",
        ]


class AcceptedSerializer(serializers.Serializer):
    service = ServiceSerializer()
    operation = OperationSerializer(allow_null=True)


class PingSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    time = serializers.IntegerField(help_text="Server time, Unix seconds.")


class AmountField(serializers.DecimalField):
    """An amount as a string with its currency's decimals (up to three: KWD), e.g. "10.00"."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_digits=15, decimal_places=3, **kwargs)

    def to_representation(self, value: Any) -> str:
        return str(trim_amount(Decimal(value)))


class InvoiceLineSerializer(serializers.Serializer):
    description = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=10, decimal_places=2)
    unit_amount = AmountField()
    amount = AmountField()


class InvoiceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.CharField(allow_null=True)
    kind = serializers.CharField()
    state = serializers.CharField()
    currency = serializers.CharField()
    subtotal = AmountField()
    tax_total = AmountField()
    total = AmountField()
    amount_paid = AmountField()
    reverse_charge = serializers.BooleanField()
    issue_date = serializers.DateField(allow_null=True)
    due_date = serializers.DateField(allow_null=True)
    paid_at = serializers.DateTimeField(allow_null=True)


class InvoiceDetailSerializer(InvoiceSerializer):
    lines = InvoiceLineSerializer(many=True, source="lines.all")


class TicketMessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    body = serializers.CharField()
    created_at = serializers.DateTimeField()


class TicketSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    subject = serializers.CharField()
    department = serializers.CharField(source="department.name")
    priority = serializers.CharField()
    state = serializers.CharField()
    service_id = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class TicketDetailSerializer(TicketSerializer):
    messages = serializers.SerializerMethodField()

    @extend_schema_field(TicketMessageSerializer(many=True))
    def get_messages(self, obj: Any) -> Any:
        from support.selectors import public_messages

        # Internal notes never leave the staff side.
        return TicketMessageSerializer(public_messages(ticket=obj), many=True).data


class TicketCreateSerializer(StrictSerializer):
    department = serializers.CharField(max_length=100, help_text="The department's name.")
    subject = serializers.CharField(max_length=200)
    body = serializers.CharField(max_length=20000)
    priority = serializers.ChoiceField(
        choices=["low", "normal", "high", "urgent"], default="normal"
    )
    service_id = serializers.IntegerField(required=False, min_value=1)


class TicketReplySerializer(StrictSerializer):
    body = serializers.CharField(max_length=20000)


class DnsRecordSetSerializer(StrictSerializer):
    name = serializers.CharField(max_length=253, help_text="'@' for the apex, or a label.")
    type = serializers.ChoiceField(choices=["A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA"])
    contents = serializers.ListField(
        child=serializers.CharField(max_length=2000), min_length=1, max_length=50
    )
    ttl = serializers.IntegerField(min_value=60, max_value=86400, required=False)


class DnsChangeSerializer(StrictSerializer):
    replace = DnsRecordSetSerializer(many=True, required=False)
    delete = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField(max_length=253), min_length=2,
                                    max_length=2),
        required=False, help_text='[["www", "CNAME"], ...]',
    )  # fmt: skip


class DatabaseCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=64)
    user = serializers.CharField(max_length=64)
    password = serializers.CharField(min_length=12, max_length=128, write_only=True)


class DatabaseDeleteSerializer(StrictSerializer):
    name = serializers.CharField(max_length=64)
    user = serializers.CharField(max_length=64, required=False)


class MailboxCreateSerializer(StrictSerializer):
    local_part = serializers.CharField(max_length=64)
    password = serializers.CharField(min_length=12, max_length=128, write_only=True)
    quota_mb = serializers.IntegerField(min_value=1, max_value=1_000_000, default=1024)


class CronJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = CronJob
        fields = [
            "id",
            "schedule",
            "command",
            "output",
            "mail_to",
            "enabled",
            "state",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class CronJobWriteSerializer(StrictSerializer):
    """A cron job as the customer sends it (checked again by the service before anything is
    queued: schedule, command, the plan's number of jobs)."""

    schedule = serializers.CharField(max_length=100)
    command = serializers.CharField(max_length=1000, trim_whitespace=False)
    output = serializers.ChoiceField(choices=CronJob.Output.choices, default="logged")
    mail_to = serializers.EmailField(required=False, allow_blank=True, default="")
    enabled = serializers.BooleanField(default=True)


class CronJobUpdateSerializer(CronJobWriteSerializer):
    job = serializers.IntegerField(min_value=1)


class CronJobDeleteSerializer(StrictSerializer):
    job = serializers.IntegerField(min_value=1)


class MailboxDeleteSerializer(StrictSerializer):
    address = serializers.EmailField()
