"""The demo install says on every page (portal, API docs, admin) that it is not for patient data;
a real install does not."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

BANNER = "Demo install — not for patient data"


@pytest.mark.parametrize("demo", [True, False])
def test_banner_on_every_page_of_the_demo_only(settings, login, world, case, demo):
    from accounts.models import User

    settings.DEMO_MODE = demo
    superuser = User.objects.create_superuser("root_admin", password="x" * 16)
    pages = [
        (None, reverse("login")),
        (None, "/no-such-page/"),
        (world.clinician, reverse("case-list")),
        (world.clinician, reverse("case-detail", args=[case.pk])),
        (world.clinician, reverse("review-queue")),  # a 403 page
        (world.pathologist, reverse("case-review", args=[case.pk])),
        (world.lab_admin, reverse("audit-log")),
        (world.lab_admin, reverse("user-list")),
        (world.clinician, "/api/docs/"),
        (superuser, "/admin/"),
        (superuser, "/admin/audit/auditevent/"),
    ]
    for user, url in pages:
        response = login(user).get(url)
        assert response.status_code in (200, 403, 404), url
        assert (BANNER in response.content.decode()) is demo, url
