"""The customer API: a customer's own objects, by personal token or browser session.

Every queryset starts from the caller's customer, so another customer's id is a 404.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Customer
from accounts.selectors import customer_for_user
from api import serializers as s
from api.auth import TokenAuthentication
from api.models import ApiToken
from api.permissions import IsCustomer
from api.throttles import TokenRateThrottle
from api.views_provisioning import refused
from billing.models import Invoice
from provisioning.errors import ProvisioningRefused
from provisioning.models import CronJob, Operation, Service
from provisioning.resources import cron
from provisioning.resources import services as resources
from support.models import Ticket
from support.selectors import (
    departments_open_to_customers,
    ticket_list_for_customer,
)
from support.services import ticket_open, ticket_reply_customer


class CustomerScopedViewSet(viewsets.GenericViewSet):
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsCustomer]
    throttle_classes = [TokenRateThrottle]
    lookup_value_converter = "int"

    def customer(self) -> Customer:
        auth = self.request.auth
        if isinstance(auth, ApiToken):
            return auth.customer
        customer = customer_for_user(user=self.request.user)
        if customer is None:
            raise NotFound("Your login is not attached to a customer.")
        return customer


class ServiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, CustomerScopedViewSet):
    """A customer's hosting accounts and what they can change on them.

    Changes start an operation on the node and answer ``202`` with it at once; follow it at
    ``/api/v1/operations/<id>/``. Input is validated before anything is queued.
    """

    serializer_class = s.ServiceSerializer

    def _start(self, request: Request, serializer: type[s.StrictSerializer], fn: Any) -> Response:
        service = self.get_object()
        data = serializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                operation = fn(service, data.validated_data, request.user)
        except ProvisioningRefused as exc:
            raise refused(exc) from exc
        return Response(s.OperationSerializer(operation).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=s.DnsChangeSerializer, responses={202: s.OperationSerializer})
    @action(detail=True, methods=["post"], url_path="dns-records")
    def dns_records(self, request: Request, pk: str | None = None) -> Response:
        return self._start(
            request,
            s.DnsChangeSerializer,
            lambda svc, v, user: resources.dns_records_change(
                service=svc,
                replace=[dict(r) for r in v.get("replace", [])],
                delete=[(n, t) for n, t in v.get("delete", [])],
                actor=user,
            ),
        )

    @extend_schema(request=s.DatabaseCreateSerializer, responses={202: s.OperationSerializer})
    @action(detail=True, methods=["post"], url_path="databases")
    def databases(self, request: Request, pk: str | None = None) -> Response:
        return self._start(
            request,
            s.DatabaseCreateSerializer,
            lambda svc, v, user: resources.database_create(service=svc, actor=user, **v),
        )

    @extend_schema(request=s.DatabaseDeleteSerializer, responses={202: s.OperationSerializer})
    @action(detail=True, methods=["post"], url_path="databases/delete")
    def databases_delete(self, request: Request, pk: str | None = None) -> Response:
        return self._start(
            request,
            s.DatabaseDeleteSerializer,
            lambda svc, v, user: resources.database_delete(service=svc, actor=user, **v),
        )

    @extend_schema(request=s.MailboxCreateSerializer, responses={202: s.OperationSerializer})
    @action(detail=True, methods=["post"], url_path="mailboxes")
    def mailboxes(self, request: Request, pk: str | None = None) -> Response:
        return self._start(
            request,
            s.MailboxCreateSerializer,
            lambda svc, v, user: resources.mailbox_create(service=svc, actor=user, **v),
        )

    @extend_schema(request=s.MailboxDeleteSerializer, responses={202: s.OperationSerializer})
    @action(detail=True, methods=["post"], url_path="mailboxes/delete")
    def mailboxes_delete(self, request: Request, pk: str | None = None) -> Response:
        return self._start(
            request,
            s.MailboxDeleteSerializer,
            lambda svc, v, user: resources.mailbox_delete(service=svc, actor=user, **v),
        )

    @extend_schema(methods=["GET"], request=None, responses={200: s.CronJobSerializer(many=True)})
    @extend_schema(
        methods=["POST"], request=s.CronJobWriteSerializer, responses={202: s.OperationSerializer}
    )
    @action(detail=True, methods=["get", "post"], url_path="cron-jobs")
    def cron_jobs(self, request: Request, pk: str | None = None) -> Response:
        """The account's cron jobs; POST adds one (within the plan's number of cron jobs)."""
        if request.method == "GET":
            jobs = self.get_object().cron_jobs.all()
            return Response(s.CronJobSerializer(jobs, many=True).data)
        return self._start(
            request,
            s.CronJobWriteSerializer,
            lambda svc, v, user: cron.cron_job_save(service=svc, actor=user, **v),
        )

    @extend_schema(request=s.CronJobUpdateSerializer, responses={202: s.OperationSerializer})
    @action(detail=True, methods=["post"], url_path="cron-jobs/update")
    def cron_jobs_update(self, request: Request, pk: str | None = None) -> Response:
        return self._start(
            request,
            s.CronJobUpdateSerializer,
            lambda svc, v, user: cron.cron_job_save(
                service=svc, job=_cron_job(svc, v.pop("job")), actor=user, **v
            ),
        )

    @extend_schema(request=s.CronJobDeleteSerializer, responses={202: s.OperationSerializer})
    @action(detail=True, methods=["post"], url_path="cron-jobs/delete")
    def cron_jobs_delete(self, request: Request, pk: str | None = None) -> Response:
        return self._start(
            request,
            s.CronJobDeleteSerializer,
            lambda svc, v, user: cron.cron_job_delete(
                service=svc, job=_cron_job(svc, v["job"]), actor=user
            ),
        )

    def get_queryset(self) -> QuerySet[Service]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request user
            return Service.objects.none()
        return Service.objects.filter(customer=self.customer()).select_related("plan", "node", "ip")


def _cron_job(service: Service, job_id: int) -> CronJob:
    job = CronJob.objects.filter(service=service, pk=job_id).first()
    if job is None:
        raise NotFound("The account has no such cron job.")
    return job


class OperationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, CustomerScopedViewSet):
    def get_serializer_class(self) -> type[s.OperationSerializer]:
        if self.action == "retrieve":
            return s.CustomerOperationDetailSerializer
        return s.OperationSerializer

    def get_queryset(self) -> QuerySet[Operation]:
        if getattr(self, "swagger_fake_view", False):
            return Operation.objects.none()
        qs = Operation.objects.filter(service__customer=self.customer()).order_by("-id")
        if self.action == "retrieve":
            qs = qs.prefetch_related("step_runs")
        service = self.request.query_params.get("service")
        if service and service.isdigit():
            qs = qs.filter(service_id=int(service))
        return qs


class InvoiceViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, CustomerScopedViewSet):
    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        return s.InvoiceDetailSerializer if self.action == "retrieve" else s.InvoiceSerializer

    def get_queryset(self) -> QuerySet[Invoice]:
        if getattr(self, "swagger_fake_view", False):
            return Invoice.objects.none()
        # Drafts are the shop's work in progress, not yet the customer's business.
        qs = Invoice.objects.filter(customer=self.customer()).exclude(state="draft")
        return qs.prefetch_related("lines") if self.action == "retrieve" else qs


class TicketViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
    CustomerScopedViewSet,
):  # fmt: skip
    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        if self.action == "create":
            return s.TicketCreateSerializer
        if self.action == "reply":
            return s.TicketReplySerializer
        return s.TicketDetailSerializer if self.action == "retrieve" else s.TicketSerializer

    def get_queryset(self) -> QuerySet[Ticket]:
        if getattr(self, "swagger_fake_view", False):
            return Ticket.objects.none()
        return ticket_list_for_customer(customer=self.customer()).select_related("department")

    @extend_schema(request=s.TicketCreateSerializer, responses={201: s.TicketDetailSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = s.TicketCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        department = departments_open_to_customers().filter(name=values["department"]).first()
        if department is None:
            raise ValidationError({"department": ["There is no such department."]})
        ticket = ticket_open(
            customer=self.customer(),
            user=request.user,  # type: ignore[arg-type]
            department=department,
            subject=values["subject"],
            body=values["body"],
            priority=values["priority"],
            service_id=values.get("service_id"),
        )
        return Response(s.TicketDetailSerializer(ticket).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.TicketReplySerializer, responses={201: s.TicketMessageSerializer})
    @action(detail=True, methods=["post"])
    def reply(self, request: Request, pk: str | None = None) -> Response:
        ticket = self.get_object()
        data = s.TicketReplySerializer(data=request.data)
        data.is_valid(raise_exception=True)
        message = ticket_reply_customer(
            ticket=ticket,
            user=request.user,  # type: ignore[arg-type]
            body=data.validated_data["body"],
        )
        return Response(s.TicketMessageSerializer(message).data, status=status.HTTP_201_CREATED)
