"""The check that an invoice's and a credit note's total is its subtotal plus tax, rounded to a
number of decimal places; two migrations set it (to cents, then to the stored precision)."""

from django.db import migrations, models
from django.db.models.expressions import CombinedExpression
from django.db.models.functions import Round

DOCUMENTS = ("creditnote", "invoice")


def totals_add_up(places: int) -> list[migrations.operations.base.Operation]:
    """Replace both documents' ``<model>_total_adds_up`` constraint with one at ``places``."""
    removed = [
        migrations.RemoveConstraint(model_name=model, name=f"billing_{model}_total_adds_up")
        for model in DOCUMENTS
    ]
    added = [
        migrations.AddConstraint(
            model_name=model,
            constraint=models.CheckConstraint(
                condition=models.Q(
                    (
                        "total",
                        Round(
                            CombinedExpression(models.F("subtotal"), "+", models.F("tax_total")),
                            places,
                        ),
                    )
                ),
                name=f"billing_{model}_total_adds_up",
            ),
        )
        for model in DOCUMENTS
    ]
    return [*removed, *added]
