"""The catalog: products and plans with the limits the provisioning engine applies."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models


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
    """A plan's limits. Zero means "none"; prices live beside it (see billing issue)."""

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
    php_workers = models.PositiveSmallIntegerField(default=4, validators=[MinValueValidator(1)])
    memory_mb = models.PositiveIntegerField("memory (MB)", default=512)
    cpu_percent = models.PositiveSmallIntegerField(
        "CPU share (% of one core)", default=100, validators=[MinValueValidator(1)]
    )
    processes = models.PositiveSmallIntegerField(default=64, validators=[MinValueValidator(1)])
    dedicated_ip = models.BooleanField("includes a dedicated IP", default=False)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.product.name} {self.name}"
