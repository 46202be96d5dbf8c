"""Shared fixtures: a small world of organisations and users (healthchecks' owner/colleague/outsider).

- site: a referring clinic, linked to lab. clinician and colleague work there, site_admin manages it.
- lab: the reading laboratory of site. pathologist and pathologist2 read there, lab_admin manages it.
- other_lab: a reading laboratory site does NOT refer to (other_pathologist).
- other_site: an unrelated clinic referring to other_lab (outsider, a clinician).
"""

import io
import os
import shutil
from dataclasses import dataclass
from datetime import date

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

DEMO_PASSWORD = "correct-horse-battery-staple"


def png_bytes(size=(64, 48), colour=(180, 60, 120), fmt="PNG"):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def smear_upload(name="smear.png", size=(64, 48), colour=(180, 60, 120), fmt="PNG", content_type="image/png"):
    return SimpleUploadedFile(name, png_bytes(size, colour, fmt), content_type=content_type)


@dataclass
class World:
    site: object
    lab: object
    other_lab: object
    other_site: object
    clinician: object
    colleague: object
    site_admin: object
    pathologist: object
    pathologist2: object
    lab_admin: object
    other_pathologist: object
    outsider: object
    patient: object

    def new_patient(self, mrn="MRN-2", **fields):
        from cases.models import Patient

        values = dict(given_name="Sam", family_name="Other", sex="M", date_of_birth=date(2015, 1, 1))
        values.update(fields)
        return Patient.objects.create(organisation=self.site, mrn=mrn, created_by=self.clinician, **values)

    def submit_case(self, files=None, priority="routine", patient=None, **kwargs):
        from cases.services import case_submit

        return case_submit(
            user=self.clinician,
            patient=patient or self.patient,
            files=files or [smear_upload()],
            clinical_notes="Lymphocytosis, suspected ALL.",
            priority=priority,
            **kwargs,
        )


def _user(username, organisation, role, **extra):
    from accounts.models import User

    return User.objects.create_user(
        username=username,
        password=DEMO_PASSWORD,
        organisation=organisation,
        role=role,
        first_name=username.split("_")[0].title(),
        last_name="Tester",
        **extra,
    )


@pytest.fixture
def world(db):
    from accounts.models import Organisation, ReferralLink
    from cases.models import Patient

    site = Organisation.objects.create(name="St Mary's Clinic", kind="referring")
    lab = Organisation.objects.create(name="Central Haematology Laboratory", kind="reading")
    other_lab = Organisation.objects.create(name="Northern Reading Laboratory", kind="reading")
    other_site = Organisation.objects.create(name="Harbour Hospital", kind="referring")
    ReferralLink.objects.create(site=site, laboratory=lab)
    ReferralLink.objects.create(site=other_site, laboratory=other_lab)
    clinician = _user("clara_clinician", site, "clinician")
    world = World(
        site=site,
        lab=lab,
        other_lab=other_lab,
        other_site=other_site,
        clinician=clinician,
        colleague=_user("colin_colleague", site, "clinician"),
        site_admin=_user("sian_siteadmin", site, "lab_admin"),
        pathologist=_user("paula_pathologist", lab, "pathologist"),
        pathologist2=_user("peter_pathologist", lab, "pathologist"),
        lab_admin=_user("lars_labadmin", lab, "lab_admin"),
        other_pathologist=_user("olga_otherlab", other_lab, "pathologist"),
        outsider=_user("oscar_outsider", other_site, "clinician"),
        patient=Patient.objects.create(
            organisation=site,
            mrn="MRN-1",
            given_name="Alex",
            family_name="Patient",
            sex="F",
            date_of_birth=date(2012, 5, 17),
            created_by=clinician,
        ),
    )
    return world


def enrol_second_factor(user):
    """The user's confirmed TOTP device (django-otp), made as the enrolment page would."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name="Test authenticator", confirmed=True)


def current_totp_code(user):
    """A code the user's authenticator app would show now (enrolling it if needed)."""
    return usable_totp_code(enrol_second_factor(user))


def usable_totp_code(device):
    """The device's code for now, which it will accept at once.

    A code is accepted once per 30 s step (a test that signs in twice within one step needs the
    reset), and after a wrong code django-otp refuses every code for 1 s (throttling): a test that
    types the right code right after a wrong one needs the throttle reset."""
    from django_otp.oath import totp

    device.refresh_from_db()
    device.last_t = -1
    device.throttle_reset(commit=False)
    device.save()
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):0{device.digits}d}"


@pytest.fixture(autouse=True)
def _second_factor_with_force_login(monkeypatch):
    """force_login() of a pathologist, lab admin or superuser also completes their second factor.

    It enrols a TOTP device and marks the session verified by it through django-otp's own session
    key, exactly what the portal's code prompt does; tests/security checks the prompt itself.
    """
    from django.test import Client

    original = Client.force_login

    def force_login(self, user, backend=None):
        original(self, user, backend)
        from django_otp import DEVICE_ID_SESSION_KEY

        from security.policy import requires_second_factor

        if requires_second_factor(user):
            session = self.session
            session[DEVICE_ID_SESSION_KEY] = enrol_second_factor(user).persistent_id
            session.save()

    monkeypatch.setattr(Client, "force_login", force_login)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def browser(monkeypatch):
    """Debian's Chromium driven by Playwright; missing: skipped locally, a failure in CI."""
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is required in CI")
        pytest.skip(f"{CHROMIUM} is not installed")
    # Playwright's sync API runs an event loop in this thread; the tests still use the ORM here.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from django.db import connections
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
            # ORM calls made while Playwright ran used their own connection: close it, or the test
            # database cannot be dropped at the end of the session.
            connections.close_all()
