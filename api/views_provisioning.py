"""The provisioning API for an outside billing system: HMAC-signed, answers at once.

Every write returns ``202 Accepted`` with the operation it queued; nothing here waits on a
node. The caller follows the operation at ``/api/v1/provisioning/operations/<id>``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import Customer
from accounts.services import customer_create_for_api
from api import serializers as s
from api.auth import HMACAuthentication
from api.errors import Conflict
from api.permissions import IsProvisioningClient
from api.throttles import ClientRateThrottle
from billing.models import Plan
from provisioning import services as provisioning
from provisioning.errors import ProvisioningRefused
from provisioning.models import Operation, Service

# Refusals that depend on the service's current state rather than on the request itself.
CONFLICT_CODES = {"busy": "operation_running", "state": "invalid_state", "stale": "invalid_state"}


def _actor_label(request: Request) -> str:
    return f"api:{request.auth.client.name}"  # type: ignore[union-attr]


def refused(exc: ProvisioningRefused) -> Exception:
    """A refusal because of the service's state is a 409; anything else is bad input."""
    code = getattr(exc, "code", None)
    if code in CONFLICT_CODES:
        return Conflict(" ".join(exc.messages), code=CONFLICT_CODES[code])
    return exc


def accepted(service: Service, operation: Operation | None) -> Response:
    body = s.AcceptedSerializer({"service": service, "operation": operation}).data
    return Response(body, status=status.HTTP_202_ACCEPTED)


class ProvisioningView(APIView):
    authentication_classes = [HMACAuthentication]
    permission_classes = [IsProvisioningClient]
    throttle_classes = [ClientRateThrottle]


class AccountCreateView(ProvisioningView):
    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        # The nonce, the customer, the service and its operation commit together: one commit
        # (one WAL flush) per call instead of one for the nonce and one for the rest. A refusal
        # rolls back only its savepoint below, so its nonce stays spent; an error that is no
        # answer of ours (a 500) rolls back everything, nonce included.
        with transaction.atomic():
            return super().dispatch(request, *args, **kwargs)

    @extend_schema(request=s.AccountCreateSerializer, responses={202: s.AcceptedSerializer})
    def post(self, request: Request) -> Response:
        data = s.AccountCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values: dict[str, Any] = data.validated_data
        plan = Plan.objects.filter(slug=values["plan"], is_active=True).first()
        if plan is None:
            return _not_found("plan", f"There is no active plan {values['plan']!r}.")
        customer: Customer | None = None
        if "customer_id" in values:
            customer = Customer.objects.filter(pk=values["customer_id"]).first()
            if customer is None:
                return _not_found("customer", f"There is no customer {values['customer_id']}.")
        try:
            # The new customer and the account commit together or not at all. (The nonce
            # was spent before, on its own, so even a refused request cannot be replayed.)
            with transaction.atomic():
                if customer is None:
                    customer = customer_create_for_api(**values["customer"])
                service, operation = provisioning.service_order_started(
                    customer=customer, plan=plan, domain=values["domain"]
                )
        except ProvisioningRefused as exc:
            raise refused(exc) from exc
        return accepted(service, operation)


class ServiceView(ProvisioningView):
    @extend_schema(responses=s.ServiceSerializer)
    def get(self, request: Request, pk: int) -> Response:
        service = get_object_or_404(Service.objects.select_related("plan", "node", "ip"), pk=pk)
        return Response(s.ServiceSerializer(service).data)


Perform = Callable[[Service, dict[str, Any]], "Operation | None"]


def service_action(
    name: str, serializer: type[s.StrictSerializer], perform: Perform
) -> type[ProvisioningView]:
    """A POST on one service: validate the body, call the engine, answer 202 at once."""

    class ServiceActionView(ProvisioningView):
        @extend_schema(request=serializer, responses={202: s.AcceptedSerializer}, operation_id=name)
        def post(self, request: Request, pk: int) -> Response:
            service = get_object_or_404(Service, pk=pk)
            data = serializer(data=request.data)
            data.is_valid(raise_exception=True)
            try:
                operation = perform(service, data.validated_data)
            except ProvisioningRefused as exc:
                raise refused(exc) from exc
            # Protected FSM fields refuse refresh_from_db(); read the row again instead.
            return accepted(Service.objects.get(pk=service.pk), operation)

    ServiceActionView.__name__ = ServiceActionView.__qualname__ = f"{name.title()}View"
    return ServiceActionView


def _change_plan(service: Service, values: dict[str, Any]) -> Operation:
    plan = get_object_or_404(Plan, slug=values["plan"], is_active=True)
    return provisioning.service_change_plan(service=service, plan=plan)


SuspendView = service_action(
    "suspend",
    s.ReasonSerializer,
    lambda svc, v: provisioning.service_suspend(service=svc, reason=v["reason"]),
)
UnsuspendView = service_action(
    "unsuspend",
    s.ReasonSerializer,
    lambda svc, v: provisioning.service_unsuspend(service=svc, reason=v["reason"]),
)
TerminateView = service_action(
    "terminate", s.EmptySerializer, lambda svc, v: provisioning.service_terminate(service=svc)
)
ChangePlanView = service_action("change_plan", s.ChangePlanSerializer, _change_plan)


class OperationView(ProvisioningView):
    @extend_schema(responses=s.OperationDetailSerializer)
    def get(self, request: Request, pk: int) -> Response:
        operation = get_object_or_404(Operation.objects.prefetch_related("step_runs"), pk=pk)
        return Response(s.OperationDetailSerializer(operation).data)


def _not_found(what: str, message: str) -> Response:
    return Response(
        {"error": {"code": f"{what}_not_found", "message": message}},
        status=status.HTTP_404_NOT_FOUND,
    )


class PingView(APIView):
    """The server's clock, so a client can check its own before signing requests."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []
    throttle_classes: list[type] = []

    @extend_schema(responses={200: s.PingSerializer})
    def get(self, request: Request) -> Response:
        return Response({"ok": True, "time": int(time.time())})
