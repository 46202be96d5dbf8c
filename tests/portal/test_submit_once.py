"""The new-case form is sent once (issue 15, defect 3): a double click, a resent form or the back
button never creates a second case."""

import re

import pytest
from django.urls import reverse

from cases.models import Case
from tests.conftest import smear_upload

pytestmark = pytest.mark.django_db


def form_token(client):
    page = client.get(reverse("case-create")).content.decode()
    match = re.search(r'name="submission_token" value="([0-9a-f]{32})"', page)
    assert match, "the form carries a one-time token"
    return match.group(1)


def post_case(client, world, token, colour=(180, 60, 120)):
    return client.post(
        reverse("case-create"),
        {
            "patient": world.patient.pk,
            "priority": "routine",
            "clinical_notes": "Blasts.",
            "images": [smear_upload("a.png", colour=colour)],
            "submission_token": token,
        },
    )


def test_the_same_form_sent_twice_makes_one_case(login, world):
    client = login(world.clinician)
    token = form_token(client)
    first = post_case(client, world, token)
    again = post_case(client, world, token)
    case = Case.objects.get()
    assert first["Location"] == again["Location"] == reverse("case-detail", args=[case.pk])
    page = client.get(again["Location"]).content.decode()
    assert f"Case {case.reference} was already submitted; nothing was sent twice." in page


def test_each_form_gets_its_own_token(login, world):
    client = login(world.clinician)
    assert form_token(client) != form_token(client)
    post_case(client, world, form_token(client))
    post_case(client, world, form_token(client))
    assert Case.objects.count() == 2


def test_the_form_reused_for_other_images_is_a_new_case(login, world):
    client = login(world.clinician)
    token = form_token(client)
    post_case(client, world, token)
    post_case(client, world, token, colour=(20, 20, 200))  # back button, other images
    assert Case.objects.count() == 2


def test_a_form_without_a_token_still_submits(login, world):
    client = login(world.clinician)
    post_case(client, world, "")
    assert Case.objects.count() == 1


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_in_the_browser_a_second_click_sends_nothing(live_server, world, browser, tmp_path):
    from tests.conftest import png_bytes
    from tests.portal.test_browser import sign_in

    image = tmp_path / "smear.png"
    image.write_bytes(png_bytes())
    page = browser.new_page()
    page.set_default_timeout(20_000)
    posts = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)
    sign_in(page, live_server.url, world.clinician)
    page.goto(f"{live_server.url}{reverse('case-create')}?patient={world.patient.pk}")
    page.set_input_files("#id_images", str(image))
    posts.clear()
    state = page.evaluate("""() => {
        const button = document.querySelector("form[data-submit-once] button[type=submit]");
        button.click();
        const after = [button.disabled, button.textContent.trim()];
        button.click();  // a second click while the first is sent
        return after;
    }""")
    assert state == [True, "Submitting…"]
    page.wait_for_selector("text=submitted to Central Haematology Laboratory with 1 image.")
    assert len(posts) == 1 and Case.objects.count() == 1
