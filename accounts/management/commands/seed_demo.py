"""Create a demo world (a clinic, a laboratory, one user per role) for an embedded install.

Passwords are random and printed once, when the users are created. Refuses to run unless
TELEDIAG_DEMO is on, so a production database never gets demo accounts.
"""

import secrets

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import Organisation, ReferralLink, User

DEMO_USERS = [
    ("clinician", "Clara", "Clinician", "clinician", "site"),
    ("pathologist", "Paula", "Pathologist", "pathologist", "lab"),
    ("labadmin", "Lars", "Labadmin", "lab_admin", "lab"),
]


class Command(BaseCommand):
    help = "Create demo organisations and one user per role (demo mode only)."

    def handle(self, *args, **options):
        if not settings.DEMO_MODE:
            raise CommandError("seed_demo only runs with TELEDIAG_DEMO=true.")
        with transaction.atomic():
            site, _ = Organisation.objects.get_or_create(
                name="Demo Children's Clinic", defaults={"kind": Organisation.Kind.REFERRING}
            )
            lab, _ = Organisation.objects.get_or_create(
                name="Demo Haematology Laboratory", defaults={"kind": Organisation.Kind.READING}
            )
            ReferralLink.objects.get_or_create(site=site, laboratory=lab)
            created = []
            orgs = {"site": site, "lab": lab}
            for username, first, last, role, org in DEMO_USERS:
                if User.objects.filter(username=username).exists():
                    continue
                password = secrets.token_urlsafe(12)
                User.objects.create_user(
                    username=username,
                    password=password,
                    first_name=first,
                    last_name=last,
                    organisation=orgs[org],
                    role=role,
                )
                created.append((username, role, password))
            if not User.objects.filter(username="admin").exists():
                password = secrets.token_urlsafe(12)
                User.objects.create_superuser("admin", "", password)
                created.append(("admin", "superuser", password))
        if not created:
            self.stdout.write("Demo users already exist (their passwords were printed when they were created).")
            return
        self.stdout.write(self.style.WARNING("Demo accounts (shown once; write them down):"))
        for username, role, password in created:
            self.stdout.write(f"  {username:<12} {role:<12} {password}")
        self.stdout.write(
            "Pathologists, lab admins and the superuser set up two-factor sign-in at their first sign-in: "
            "scan the QR code with an authenticator app (or type the key shown, e.g. into "
            "`oathtool --totp -b KEY`)."
        )
