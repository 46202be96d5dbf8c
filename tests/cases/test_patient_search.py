"""Patient search: every word matches MRN, given or family name; on a network-sized table
PostgreSQL reads it off the trigram indexes instead of scanning a site's patients."""

from django.db import connection

from accounts.models import Organisation
from cases.access import patients_visible_to, search_patients
from cases.models import Patient


def test_every_word_must_match_somewhere(world):
    world.new_patient(mrn="HX-77", given_name="Robin", family_name="Okafor")
    world.new_patient(mrn="HX-78", given_name="Robin", family_name="Smith")
    visible = patients_visible_to(world.clinician)
    assert [p.mrn for p in search_patients(visible, "robin oka")] == ["HX-77"]
    assert sorted(p.mrn for p in search_patients(visible, "hx-7")) == ["HX-77", "HX-78"]
    assert not search_patients(patients_visible_to(world.outsider), "robin").exists()


def _network_of_patients(world, sites=20, per_site=12_500):  # the 1M-case network of bench/scale.py
    """``sites`` clinics of ``per_site`` patients each (world.site among them), registered in turns as
    in a real network (a site's patients are spread over the table), inserted by PostgreSQL."""
    others = Organisation.objects.bulk_create(
        Organisation(name=f"Clinic {index}", kind="referring") for index in range(sites - 1)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO cases_patient (organisation_id, mrn, given_name, family_name, sex, date_of_birth,
                                       created_by_id, created_at)
            SELECT org.id, 'MRN-' || lpad(n::text, 6, '0'), 'Given' || n, 'Family' || mod(n, 700), 'F',
                   DATE '2010-01-01', %s, now()
            FROM generate_series(1, %s) AS n, unnest(%s::bigint[]) AS org(id)
            """,
            [world.clinician.pk, per_site, [world.site.pk, *(org.pk for org in others)]],
        )
        cursor.execute("ANALYZE cases_patient")


def test_the_trigram_indexes_answer_a_name_or_mrn_fragment(world):
    # Across the network's 250,000 patients PostgreSQL reads a fragment off the indexes (a site's
    # own search may instead walk its organisation's rows: bench/scale.py measures both at 1M).
    assert connection.vendor == "postgresql"
    _network_of_patients(world)
    for query, index, expected in (
        ("001234", "patient_mrn_trgm", 20),
        ("given4711", "patient_given_name_trgm", 20),
        ("family699", "patient_family_name_trgm", 20 * 17),
    ):
        found = search_patients(Patient.objects.all(), query)
        plan = found.explain()
        assert index in plan, plan
        assert found.count() == expected
    assert [p.mrn for p in search_patients(patients_visible_to(world.clinician), "given4711")] == ["MRN-004711"]
