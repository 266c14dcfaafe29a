"""CSV import and export of quality priors (django-import-export).

One row per model (by OpenRouter id) or family (by slug): `model,family,score,source,as_of,note`.
A row updates the prior of its model or family when there is one. A row naming a model or a
family the catalog does not know, both or neither, a score outside 0–1 or a bad date is refused
with the row and the field.
"""

from __future__ import annotations

import math

from import_export import fields, resources
from import_export.widgets import DateWidget, FloatWidget, ForeignKeyWidget

from catalog.models import CatalogModel, Family
from costs.csvsafe import escape_cell
from routing.models import QualityPrior


class CatalogReferenceWidget(ForeignKeyWidget):
    """A model by id or a family by slug; an unknown one is a field error that names it."""

    def __init__(self, model, field: str, noun: str) -> None:
        super().__init__(model, field)
        self.noun = noun

    def clean(self, value, row=None, **kwargs):
        value = (value or "").strip() if isinstance(value, str) else value
        if not value:
            return None
        try:
            return super().clean(value, row, **kwargs)
        except self.model.DoesNotExist:
            raise ValueError(f"No {self.noun} '{value}' in the catalog.") from None


class ScoreWidget(FloatWidget):
    def clean(self, value, row=None, **kwargs):
        try:
            score = super().clean(value, row, **kwargs)
        except (ValueError, ArithmeticError):
            score = math.nan
        # `nan` and `inf` parse as floats, and nan passes the 0–1 validators (no comparison holds).
        if score is not None and not math.isfinite(score):
            raise ValueError(f"'{value}' is not a number: a score is between 0 and 1.")
        return score


class QualityPriorResource(resources.ModelResource):
    model = fields.Field(
        attribute="model", column_name="model", widget=CatalogReferenceWidget(CatalogModel, "id", "model")
    )
    family = fields.Field(
        attribute="family", column_name="family", widget=CatalogReferenceWidget(Family, "slug", "family")
    )
    score = fields.Field(attribute="score", column_name="score", widget=ScoreWidget())
    as_of = fields.Field(attribute="as_of", column_name="as_of", widget=DateWidget("%Y-%m-%d"))

    class Meta:
        model = QualityPrior
        fields = ("model", "family", "score", "source", "as_of", "note")
        export_order = fields
        import_id_fields = ("model", "family")
        clean_model_instances = True  # the model's validators and clean(): score 0–1, model xor family
        skip_unchanged = True
        report_skipped = True

    def get_instance(self, instance_loader, row):
        # An unknown model or family is reported by the field (import_instance), not as a crash
        # of the lookup: the row is then a new prior that fails validation.
        try:
            return super().get_instance(instance_loader, row)
        except ValueError:
            return None

    def export_field(self, field, instance, **kwargs):
        return escape_cell(super().export_field(field, instance, **kwargs))
