"""Quality priors imported as CSV through the admin (django-import-export), and what they do to a
decision: a model's prior, else its family's, where no category ranking speaks, named in the
candidate's parts."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from catalog.models import Category, CategoryRanking
from routing.models import QualityPrior
from routing.resources import QualityPriorResource
from tests.factories import CatalogModelFactory, FamilyFactory, RoleFactory, SyncRunFactory

pytestmark = pytest.mark.django_db

HEADER = "model,family,score,source,as_of,note\n"


@pytest.fixture
def catalog(db):
    family = FamilyFactory(slug="acme-pro", pattern="acme/pro-*", priority=5)
    models = {
        "pro1": CatalogModelFactory(id="acme/pro-1", family=family),
        "pro2": CatalogModelFactory(id="acme/pro-2", family=family),
        "plain": CatalogModelFactory(id="acme/plain"),
    }
    RoleFactory(slug="coder")
    return models


def import_csv(admin_client, text: str):
    """The admin's two steps: upload (a dry run shown for confirmation), then confirm."""
    upload = admin_client.post(
        reverse("admin:routing_qualityprior_import"),
        {"resource": "0", "format": "0", "import_file": SimpleUploadedFile("priors.csv", text.encode())},
    )
    assert upload.status_code == 200
    confirm = upload.context.get("confirm_form")
    if confirm is None:
        return upload  # refused: the page shows the errors
    done = admin_client.post(reverse("admin:routing_qualityprior_process_import"), confirm.initial)
    assert done.status_code == 302, done.content[:2000]
    return done


def candidates(api_client, **body) -> dict[str, dict]:
    answer = api_client.post_json("/api/v1/route", {"role": "coder", "fallback_count": 2, **body}).json()
    return {c["model"]: c["parts"] for c in answer["candidates"]}


def test_priors_imported_through_the_admin_feed_the_decision(admin_client, api_client, catalog):
    before = candidates(api_client)
    assert {parts["prior_source"] for parts in before.values()} == {"catalog signals"}

    import_csv(
        admin_client,
        HEADER + "acme/pro-1,,0.91,LMArena text,2026-05-01,top ten\n" + ",acme-pro,0.7,Aider polyglot,2026-04-15,\n",
    )

    assert QualityPrior.objects.count() == 2
    parts = candidates(api_client)
    assert parts["acme/pro-1"]["prior"] == 0.91
    assert parts["acme/pro-1"]["prior_source"] == "LMArena text (2026-05-01)"
    # The family's prior for a member without its own.
    assert parts["acme/pro-2"]["prior"] == 0.7
    assert parts["acme/pro-2"]["prior_source"] == "Aider polyglot (2026-04-15)"
    assert parts["acme/plain"]["prior_source"] == "catalog signals"
    assert parts["acme/plain"]["prior"] == before["acme/plain"]["prior"]


def test_a_second_import_updates_the_prior_of_the_same_model(admin_client, api_client, catalog):
    import_csv(admin_client, HEADER + "acme/pro-1,,0.5,LMArena text,2026-05-01,\n")
    import_csv(admin_client, HEADER + "acme/pro-1,,0.8,LMArena text,2026-06-01,\n")

    prior = QualityPrior.objects.get()
    assert (prior.score, prior.as_of) == (0.8, date(2026, 6, 1))
    assert candidates(api_client)["acme/pro-1"]["prior_source"] == "LMArena text (2026-06-01)"


def test_a_category_ranking_speaks_before_an_imported_prior(admin_client, api_client, catalog):
    QualityPrior.objects.create(model=catalog["pro1"], score=0.2, source="LMArena text", as_of=date(2026, 5, 1))
    run = SyncRunFactory(kind="research")
    programming = Category.objects.get_or_create(slug="programming", defaults={"name": "Programming"})[0]
    CategoryRanking.objects.create(
        category=programming, model=catalog["pro1"], rank=1, run=run, observed_at=run.started_at
    )

    assert candidates(api_client, category="programming")["acme/pro-1"]["prior_source"] == "rank 1 of 1 in programming"
    assert candidates(api_client)["acme/pro-1"]["prior_source"] == "LMArena text (2026-05-01)"


def test_deleting_a_prior_reaches_the_next_decision(api_client, catalog):
    prior = QualityPrior.objects.create(model=catalog["plain"], score=0.99, source="Arena", as_of=date(2026, 5, 1))
    assert candidates(api_client)["acme/plain"]["prior"] == 0.99
    prior.delete()
    assert candidates(api_client)["acme/plain"]["prior_source"] == "catalog signals"


def test_bad_rows_are_refused_with_the_row_and_the_reason(admin_client, catalog):
    page = import_csv(
        admin_client,
        HEADER
        + "acme/nothing,,0.5,Arena,2026-05-01,\n"
        + ",no-such-family,0.5,Arena,2026-05-01,\n"
        + "acme/pro-1,acme-pro,0.5,Arena,2026-05-01,\n"
        + ",,0.5,Arena,2026-05-01,\n"
        + "acme/pro-2,,1.5,Arena,2026-05-01,\n"
        + "acme/plain,,high,Arena,2026-05-01,\n"
        + "acme/plain,,0.5,Arena,May 2026,\n"
        + "acme/pro-1,,nan,Arena,2026-05-01,\n"
        + ",acme-pro,-inf,Arena,2026-05-01,\n",
    )

    text = page.content.decode()
    result = page.context["result"]
    assert result.has_validation_errors() and not result.has_errors()
    invalid = {row.number: row.error_dict for row in result.invalid_rows}
    assert sorted(invalid) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert "No model &#x27;acme/nothing&#x27; in the catalog." in text
    assert "No family &#x27;no-such-family&#x27; in the catalog." in text
    assert "Give a model or a family (one of them)." in text
    assert "is less than or equal to 1" in text
    assert "&#x27;high&#x27; is not a number" in text
    assert "&#x27;nan&#x27; is not a number" in text and "&#x27;-inf&#x27; is not a number" in text
    assert "as_of" in invalid[7]
    assert QualityPrior.objects.count() == 0


def test_only_who_may_add_and_change_priors_may_import_them(client, catalog, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_qualityprior"))
    client.force_login(user)
    assert client.get(reverse("admin:routing_qualityprior_changelist")).status_code == 200
    assert client.get(reverse("admin:routing_qualityprior_import")).status_code == 403


def test_the_export_round_trips_and_escapes_formula_cells(catalog):
    QualityPrior.objects.create(
        family=catalog["pro1"].family, score=0.75, source="=HYPERLINK(1)", as_of=date(2026, 5, 1), note="+1"
    )

    rows = list(csv.DictReader(io.StringIO(QualityPriorResource().export().csv)))
    assert rows == [
        {
            "model": "",
            "family": "acme-pro",
            "score": "0.75",
            "source": "'=HYPERLINK(1)",
            "as_of": "2026-05-01",
            "note": "'+1",
        }
    ]
    assert Decimal(rows[0]["score"]) == Decimal("0.75")


def test_the_list_page_makes_as_many_queries_for_30_priors_as_for_3(admin_client, catalog):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    counts = []
    for size in (3, 30):
        for i in range(len(counts) * 3, size):
            model = CatalogModelFactory(id=f"acme/ranked-{i}")
            QualityPrior.objects.create(model=model, score=0.5, source="Arena", as_of=date(2026, 5, 1))
        with CaptureQueriesContext(connection) as ctx:
            page = admin_client.get(reverse("admin:routing_qualityprior_changelist"))
        assert page.status_code == 200 and b"Arena (2026-05-01)" in page.content
        counts.append(len(ctx))
    assert counts[0] == counts[1], counts
