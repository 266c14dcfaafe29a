"""Fixtures shared by the routing tests."""

from __future__ import annotations

from decimal import Decimal

import pytest

from catalog.models import Category, CategoryRanking
from tests.factories import CatalogModelFactory, CategoryFactory, RoleFactory, SyncRunFactory


@pytest.fixture
def ranked_trio(db):
    """Three models ranked in programming, dear first: one cheap for a long prompt, one cheap per
    token, one dear; tools on all but a model named "no-tools"; a role `coder`."""
    CategoryFactory(slug="programming")
    models = {
        name: CatalogModelFactory(
            id=f"acme/{name}",
            price_prompt=Decimal(prompt),
            price_completion=Decimal(completion),
            supports_tools=name != "no-tools",
        )
        for name, prompt, completion in (
            ("prompt-cheap", "0.0000001", "0.00004"),
            ("per-token-cheap", "0.000002", "0.000002"),
            ("dear", "0.00001", "0.00004"),
        )
    }
    category = Category.objects.get(slug="programming")
    run = SyncRunFactory(kind="research")
    for rank, key in enumerate(["dear", "per-token-cheap", "prompt-cheap"], start=1):
        CategoryRanking.objects.create(
            category=category, model=models[key], rank=rank, run=run, observed_at=run.started_at
        )
    RoleFactory(slug="coder")
    return models
