from __future__ import annotations

from decimal import Decimal

import factory
from factory.django import DjangoModelFactory

from catalog.models import CatalogModel, Category, Family


class FamilyFactory(DjangoModelFactory):
    class Meta:
        model = Family
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"family-{n}")
    name = factory.LazyAttribute(lambda f: f.slug.title())
    pattern = factory.LazyAttribute(lambda f: f"test/{f.slug}*")
    priority = 50


class CategoryFactory(DjangoModelFactory):
    class Meta:
        model = Category
        django_get_or_create = ("slug",)

    slug = factory.Sequence(lambda n: f"category-{n}")
    name = factory.LazyAttribute(lambda c: c.slug.title())


class CatalogModelFactory(DjangoModelFactory):
    class Meta:
        model = CatalogModel

    id = factory.Sequence(lambda n: f"test-author/model-{n}")
    name = factory.LazyAttribute(lambda m: f"Test: {m.id.split('/')[-1]}")
    canonical_slug = factory.LazyAttribute(lambda m: m.id)
    author = factory.LazyAttribute(lambda m: m.id.split("/")[0])
    context_length = 128_000
    max_completion_tokens = 16_384
    input_modalities = factory.LazyFunction(lambda: ["text"])
    output_modalities = factory.LazyFunction(lambda: ["text"])
    supported_parameters = factory.LazyFunction(lambda: ["max_tokens", "temperature"])
    price_prompt = Decimal("0.00000125")
    price_completion = Decimal("0.00001")
