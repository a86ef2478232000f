"""Invoices and credit notes as PDF (WeasyPrint renders the HTML template)."""

from __future__ import annotations

from django.conf import settings
from django.template.loader import render_to_string
from weasyprint import HTML

from billing.models import CreditNote, Invoice


def invoice_pdf(*, invoice: Invoice) -> bytes:
    html = render_to_string(
        "billing/invoice_pdf.html",
        {
            "invoice": invoice,
            "lines": invoice.lines.all(),
            "credit_notes": invoice.credit_notes.all(),
            "seller": settings.BILLING_SELLER,
            "brand": settings.HOSTING_BRAND,
        },
    )
    return bytes(HTML(string=html).write_pdf())


def credit_note_pdf(*, note: CreditNote) -> bytes:
    html = render_to_string(
        "billing/credit_note_pdf.html",
        {"note": note, "invoice": note.invoice, "seller": settings.BILLING_SELLER},
    )
    return bytes(HTML(string=html).write_pdf())
