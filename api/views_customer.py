"""The customer API: a customer's own objects, by personal token or browser session.

Every queryset starts from the caller's customer, so another customer's id is a 404.
"""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import mixins, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotFound

from accounts.models import Customer
from accounts.selectors import customer_for_user
from api import serializers as s
from api.auth import TokenAuthentication
from api.models import ApiToken
from api.permissions import IsCustomer
from api.throttles import TokenRateThrottle
from provisioning.models import Operation, Service


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
    serializer_class = s.ServiceSerializer

    def get_queryset(self) -> QuerySet[Service]:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no request user
            return Service.objects.none()
        return Service.objects.filter(customer=self.customer()).select_related("plan", "node", "ip")


class OperationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, CustomerScopedViewSet):
    def get_serializer_class(self) -> type[s.OperationSerializer]:
        return s.OperationDetailSerializer if self.action == "retrieve" else s.OperationSerializer

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
