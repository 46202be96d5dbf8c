"""Set up a fault-suite database: a clinic, its laboratory, a clinician with an API token, patients,
and the shipped default model. Prints one JSON line: {"token", "patients"}.

Run with the suite's environment (DATABASE_URL and friends): ``python -m reliability.seed N``.
"""

import json
import os
import sys
from datetime import date


def main(patients=20):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telediag.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from accounts.models import Organisation, ReferralLink, User
    from cases.models import Patient

    call_command("register_default_model", verbosity=0)
    site, _ = Organisation.objects.get_or_create(name="Fault Suite Clinic", defaults={"kind": "referring"})
    lab, _ = Organisation.objects.get_or_create(name="Fault Suite Laboratory", defaults={"kind": "reading"})
    ReferralLink.objects.get_or_create(site=site, laboratory=lab)
    user = User.objects.filter(username="fault_clinician").first() or User.objects.create_user(
        username="fault_clinician",
        password=None,
        organisation=site,
        role="clinician",
        first_name="Fault",
        last_name="Suite",
    )
    token, _ = Token.objects.get_or_create(user=user)
    ids = []
    for number in range(patients):
        patient, _ = Patient.objects.get_or_create(
            organisation=site,
            mrn=f"FS-{number:04d}",
            defaults=dict(
                given_name="Load",
                family_name=f"Patient{number}",
                sex="F",
                date_of_birth=date(2010, 1, 1),
                created_by=user,
            ),
        )
        ids.append(patient.pk)
    print(json.dumps({"token": token.key, "patients": ids}))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
