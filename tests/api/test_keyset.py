"""Keyset (cursor) pages of the long API lists, their page-number compatibility, and case search."""

import pytest

from tests.portal.test_list_queries import add_mixed_cases


@pytest.fixture
def login(client):
    def _login(user):
        client.force_login(user)
        return client

    return _login


def _walk(client, url, **params):
    """Every row of a list by following `next`; also the pages' sizes."""
    ids, sizes = [], []
    body = client.get(url, params).json()
    while True:
        ids += [row["id"] for row in body["results"]]
        sizes.append(len(body["results"]))
        if not body["next"]:
            return ids, sizes
        body = client.get(body["next"]).json()


@pytest.mark.parametrize(
    "user, url, total",
    [
        ("clinician", "/api/cases/", 40),
        ("lab_admin", "/api/audit-events/", None),
        ("pathologist", "/api/analysis/jobs/", None),
    ],
)
def test_cursor_pages_cover_the_list_once_newest_first(world, client_for, user, url, total):
    add_mixed_cases(world, 40)
    client = client_for(getattr(world, user))
    first = client.get(url, {"page_size": 7}).json()
    assert set(first) == {"next", "previous", "results"} and first["previous"] is None
    assert "cursor=" in first["next"] and "page_size=7" in first["next"]
    ids, sizes = _walk(client, url, page_size=7)
    assert len(ids) == len(set(ids)) and all(size == 7 for size in sizes[:-1]) and 0 < sizes[-1] <= 7
    if total is not None:
        assert len(ids) == total
    # page numbers still work (count included) and list the same rows in the same order
    numbered = client.get(url, {"page": 1, "page_size": 100}).json()
    assert numbered["count"] == len(ids) and [row["id"] for row in numbered["results"]] == ids[:100]
    # and `previous` leads back
    second = client.get(first["next"]).json()
    assert client.get(second["previous"]).json()["results"] == first["results"]


def test_analysis_jobs_honour_page_size(world, client_for):
    add_mixed_cases(world, 10)
    body = client_for(world.pathologist).get("/api/analysis/jobs/", {"page_size": 3}).json()
    assert len(body["results"]) == 3
    assert len(client_for(world.pathologist).get("/api/analysis/jobs/", {"page_size": 1000}).json()["results"]) == 19
    failed = client_for(world.pathologist).get("/api/analysis/jobs/", {"status": "failed", "page_size": 100}).json()
    assert {row["status"] for row in failed["results"]} == {"failed"}


@pytest.mark.parametrize(
    "params, field",
    [
        ({"cursor": "garbage!"}, "cursor"),
        ({"cursor": "cD1ub3QtYS1kYXRl"}, "cursor"),  # p=not-a-date
        ({"page_size": "0"}, "page_size"),
        ({"page": "x"}, "page"),
    ],
)
def test_bad_cursor_or_page_size_is_a_400(world, client_for, params, field):
    response = client_for(world.clinician).get("/api/cases/", params)
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_case_search_by_reference_or_mrn(world, client_for, login):
    add_mixed_cases(world, 6)
    from cases.models import Case

    case = Case.objects.filter(site=world.site).order_by("pk")[3]
    api = client_for(world.clinician)
    for query in (case.reference, str(case.pk), case.reference.lower()):
        assert [row["id"] for row in api.get("/api/cases/", {"q": query}).json()["results"]] == [case.pk]
    by_mrn = api.get("/api/cases/", {"q": "MRN-1"}).json()["results"]
    assert by_mrn and {row["patient"]["mrn"] for row in by_mrn} == {"MRN-1"}
    assert api.get("/api/cases/", {"q": "no-such-mrn"}).json()["results"] == []
    # the portal's case list searches the same way, for pathologists too
    page = login(world.pathologist).get("/cases/", {"q": case.reference}).context["page_obj"]
    assert [c.pk for c in page] == [case.pk]
    # another site's clinician finds nothing
    assert client_for(world.outsider).get("/api/cases/", {"q": case.reference}).json()["results"] == []


def test_failed_analyses_page_is_paginated(world, login, settings):
    add_mixed_cases(world, 80)  # 53 failed jobs
    client = login(world.lab_admin)
    first = client.get("/analysis/failed/").context["page_obj"]
    assert len(first) == 50 and first.is_first and first.older_token
    second = client.get("/analysis/failed/", {"before": first.older_token}).context["page_obj"]
    assert len(second) == 3 and second.older_token is None
    assert not {j.pk for j in first} & {j.pk for j in second}
    assert (
        client.get("/analysis/failed/", {"after": second.newer_token}).context["page_obj"].object_list
        == first.object_list
    )


def test_a_long_list_says_more_than_instead_of_counting(world, login, monkeypatch):
    from core import pagination

    monkeypatch.setattr(pagination, "COUNT_CAP", 30)
    add_mixed_cases(world, 40)
    response = login(world.clinician).get("/cases/")
    paginator = response.context["page_obj"].paginator
    assert paginator.count == 30 and paginator.count_capped
    assert "of more than 30" in response.content.decode()
    assert len(login(world.clinician).get("/cases/", {"page": 2}).context["page_obj"]) == 5


def test_page_numbers_count_up_to_the_cap_and_the_cursor_reads_past_it(world, client_for, monkeypatch):
    monkeypatch.setattr("core.pagination.COUNT_CAP", 12)
    add_mixed_cases(world, 20)
    client = client_for(world.clinician)
    numbered = client.get("/api/cases/", {"page": 1, "page_size": 5}).json()
    assert numbered["count"] == 12 and numbered["count_capped"] is True
    last = client.get("/api/cases/", {"page": "last", "page_size": 5}).json()
    assert len(last["results"]) == 2 and last["next"] is None
    assert client.get("/api/cases/", {"page": 4, "page_size": 5}).status_code == 404
    ids, _ = _walk(client, "/api/cases/", page_size=5)
    assert len(ids) == 20
    small = client_for(world.outsider).get("/api/cases/", {"page": 1}).json()
    assert small["count"] == 0 and small["count_capped"] is False
