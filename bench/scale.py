"""Every list, queue, search and detail page and API endpoint at 10k, 100k and 1M cases (issue 19).

    .venv/bin/python bench/scale.py                                  # 10k, 100k, 1M cases
    .venv/bin/python bench/scale.py --sizes 10000 100000 --requests 20
    .venv/bin/python bench/scale.py --sizes 1000000 --keep           # keep the database afterwards
    .venv/bin/python bench/scale.py --reuse --sizes 1000000          # measure a kept database again

What it does:

- a throwaway PostgreSQL database (``--db``, default telediag_scale_bench; dropped, created and
  migrated at the start unless ``--reuse``, dropped at the end unless ``--keep``);
- 20 referring sites and 3 reading laboratories (each site refers to one laboratory; 7/7/6 sites),
  a clinician per site, a pathologist and a lab admin per laboratory and per site;
- the data, grown size by size with ``INSERT … SELECT … FROM generate_series`` inside PostgreSQL
  (the fastest bulk path there is; every row satisfies the models' constraints and foreign keys):
  a patient per 4 cases, 2 smears per case, an analysis job per smear (0.2 % failed), a prediction
  per finished job (1 in 53 flagged), a signature per signed case and an amendment per amended one,
  and 10 audit events per case (submitted, analysis requested, views, signed/amended) plus one per
  patient; each case's AI flag is then set by the application's own rule (inference.flagging);
  about 0.6 % of the cases are unsigned (the review queues), 10 % urgent, 2 % amended;
- every page and endpoint, through Django's test client in this process (so the numbers are the
  server's: URL routing, middleware, queries, templates and serializers, no network): ``--warmup``
  requests, then ``--requests`` timed ones: p50 and p95 in ms, the SQL wall time (p50, summed over
  the request's queries), the CPU time of this process (p50: Django, templates, serializers; it
  hardly depends on what else runs on the machine, unlike the wall times), the number of SQL
  queries, the response's bytes.

The table has one row per page and one column group per size. Deep pages: the portal's page 200
of a case list and of the review queue's last page; the API's keyset (cursor) pages 5,000 rows in.
"""

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import ROOT, Contention, machine_line, percentile, top_other_processes  # noqa: E402

SITES = 20
LABS = 3
EVENTS_PER_CASE = 10
CASES_PER_PATIENT = 4
CHUNK = 100_000  # cases per INSERT statement: progress without huge transactions
# Audit ids: 11·c + k + 1 for case c's events (k < 10), 11·c + 11 for the "created" event of the patient
# whose first case is c. Events the pages write while measured get ids from APP_EVENT_IDS up, so a
# later growth never collides with them.
APP_EVENT_IDS = 100_000_000_000
BASE_TIME = "2021-01-01 00:00:00+00"
SECONDS_PER_CASE = 150  # 1M cases span ~4.8 years


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--requests", type=int, default=20, help="timed requests per page (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--db", default="telediag_scale_bench")
    parser.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--reuse", action="store_true", help="measure the database as it is (no drop/migrate)")
    parser.add_argument("--only", nargs="*", default=[], help="measure only the pages whose name contains one of these")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of each page's slowest query")
    parser.add_argument("--json", help="write the results to this JSON file")
    return parser.parse_args(argv)


def log(message):
    print(message, flush=True)


def prepare_environment(args):
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"telediag-scale-{os.getpid()}"
    (work / "var").mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "telediag.settings",
            "DATABASE_URL": f"{args.pg.rstrip('/')}/{args.db}",
            "TELEDIAG_VAR_DIR": str(work / "var"),
            "MEDIA_ROOT": str(work / "media"),
            "STATIC_ROOT": str(work / "static"),  # collected below, as in production (manifest storage)
            "SECRET_KEY": "bench-only-" + uuid.uuid4().hex + uuid.uuid4().hex,
            "DEBUG": "false",
            "TELEDIAG_DEMO": "false",
            "TELEDIAG_HTTPS": "false",
            "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
            "CELERY_BROKER_URL": "memory://",
        }
    )


def admin_sql(args, statement):
    import psycopg2

    connection = psycopg2.connect(f"{args.pg.rstrip('/')}/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(statement)
    connection.close()


# --------------------------------------------------------------------------------------------------
# The world: organisations, users, a model version


def build_world():
    from accounts.models import Organisation, ReferralLink, User
    from training.models import ModelVersion

    labs = [
        Organisation.objects.create(name=f"Reading laboratory {i + 1}", kind=Organisation.Kind.READING)
        for i in range(LABS)
    ]
    sites = [
        Organisation.objects.create(name=f"Referring site {i + 1:02d}", kind=Organisation.Kind.REFERRING)
        for i in range(SITES)
    ]
    for i, site in enumerate(sites):
        ReferralLink.objects.create(site=site, laboratory=labs[i % LABS])

    def user(name, org, role):
        return User.objects.create_user(
            name,
            password=None,
            organisation=org,
            role=role,
            first_name=name.split("-")[0].title(),
            last_name=name.split("-", 1)[1],
        )

    for i, site in enumerate(sites):
        user(f"clinician-site{i + 1:02d}", site, User.Role.CLINICIAN)
        user(f"admin-site{i + 1:02d}", site, User.Role.LAB_ADMIN)
    for i, lab in enumerate(labs):
        user(f"pathologist-lab{i + 1}", lab, User.Role.PATHOLOGIST)
        user(f"admin-lab{i + 1}", lab, User.Role.LAB_ADMIN)
    ModelVersion.objects.create(
        name="bench-mobilenetv2",
        architecture="mobilenetv2",
        file_path="bench/model.keras",
        sha256="0" * 64,
        class_names=["benign", "early_pre_b", "pre_b", "pro_b"],
        input_size=128,
        is_active=True,
    )


def world_ids():
    from accounts.models import Organisation, User
    from training.models import ModelVersion

    labs = list(
        Organisation.objects.filter(kind=Organisation.Kind.READING).order_by("name").values_list("pk", flat=True)
    )
    sites = list(
        Organisation.objects.filter(kind=Organisation.Kind.REFERRING).order_by("name").values_list("pk", flat=True)
    )
    users = {u.username: u for u in User.objects.all()}
    return {
        "labs": labs,
        "sites": sites,
        "site_lab": [labs[i % LABS] for i in range(SITES)],
        "clinician": [users[f"clinician-site{i + 1:02d}"].pk for i in range(SITES)],
        "pathologist_of_site": [users[f"pathologist-lab{i % LABS + 1}"].pk for i in range(SITES)],
        "users": users,
        "model_version": ModelVersion.objects.get(name="bench-mobilenetv2").pk,
    }


# --------------------------------------------------------------------------------------------------
# Bulk data: INSERT … SELECT generate_series, in chunks of cases


def _arr(values):
    return "ARRAY[" + ",".join(str(int(v)) for v in values) + "]::bigint[]"


def grow(ids, start, stop):
    """Add cases [start, stop) (0-based c; case id c + 1) with their patients, smears, jobs,
    predictions, reviews and audit events, and set the new cases' AI flags."""
    from django.db import connection

    from cases.models import Case
    from inference.flagging import cases_flag_recompute

    sites, site_lab = _arr(ids["sites"]), _arr(ids["site_lab"])
    clinician, pathologist = _arr(ids["clinician"]), _arr(ids["pathologist_of_site"])
    mv = ids["model_version"]
    # Per case c: site index c % 20, round r = c / 20; status and priority from r (independent of the site).
    case_cols = f"""
        c, c % {SITES} AS s, c / {SITES} AS r,
        timestamptz '{BASE_TIME}' + make_interval(secs => c * {SECONDS_PER_CASE}) AS t,
        CASE WHEN (c / {SITES}) % 499 = 7 THEN 'awaiting_review' WHEN (c / {SITES}) % 499 = 8 THEN 'analysing'
             WHEN (c / {SITES}) % 499 = 9 THEN 'submitted' WHEN (c / {SITES}) % 47 = 5 THEN 'amended'
             ELSE 'signed' END AS status"""
    statements = []
    for lo in range(start, stop, CHUNK):
        hi = min(stop, lo + CHUNK)
        p_lo = -(-lo // (SITES * CASES_PER_PATIENT)) * SITES if lo else 0
        p_hi = -(-hi // (SITES * CASES_PER_PATIENT)) * SITES
        statements += [
            (
                "patients",
                f"""
            INSERT INTO cases_patient (id, organisation_id, mrn, given_name, family_name, sex, date_of_birth, created_by_id, created_at)
            SELECT q + 1, ({sites})[q % {SITES} + 1], 'MRN' || lpad((q / {SITES})::text, 8, '0'),
                   (ARRAY['Amira','Ben','Chloe','Dawit','Elena','Farid','Grace','Hugo','Ines','Jonas','Kofi','Lena','Mateo'])[q % 13 + 1],
                   (ARRAY['Adeyemi','Brown','Costa','Dubois','Eriksen','Fischer','Garcia','Haddad','Ivanova','Jensen','Kowalski',
                          'Lopez','Müller','Nguyen','Okafor','Petrov','Rossi','Silva','Tanaka','Weber'])[(q / 7) % 20 + 1],
                   (ARRAY['F','M'])[q % 2 + 1], date '1950-01-01' + (q * 37 % 25000),
                   ({clinician})[q % {SITES} + 1],
                   timestamptz '{BASE_TIME}' + make_interval(secs => (q / {SITES}) * {SITES * CASES_PER_PATIENT * SECONDS_PER_CASE})
            FROM generate_series({p_lo}, {p_hi - 1}) AS q""",
            ),
            (
                "patient events",
                f"""
            INSERT INTO audit_auditevent (id, created_at, action, ip_address, detail, actor_id, actor_organisation_id, case_id, patient_id)
            SELECT 11 * ((q / {SITES}) * {SITES * CASES_PER_PATIENT} + q % {SITES}) + 11, timestamptz '{BASE_TIME}' + make_interval(secs => (q / {SITES}) * {SITES * CASES_PER_PATIENT * SECONDS_PER_CASE}),
                   'created', '10.1.0.7', '{{"object": "patient"}}', ({clinician})[q % {SITES} + 1], ({sites})[q % {SITES} + 1], NULL, q + 1
            FROM generate_series({p_lo}, {p_hi - 1}) AS q""",
            ),
            (
                "cases",
                f"""
            INSERT INTO cases_case (id, patient_id, site_id, laboratory_id, submitted_by_id, clinical_notes, priority, status,
                                    requested_model_version_id, signed_by_id, signed_at, created_at, updated_at)
            SELECT c + 1, (r / {CASES_PER_PATIENT}) * {SITES} + s + 1, ({sites})[s + 1], ({site_lab})[s + 1], ({clinician})[s + 1],
                   'Fatigue, pallor; CBC attached.', CASE WHEN r % 10 = 3 THEN 'urgent' ELSE 'routine' END, status, NULL,
                   CASE WHEN status IN ('signed', 'amended') THEN ({pathologist})[s + 1] END,
                   CASE WHEN status IN ('signed', 'amended') THEN t + interval '1 day' END,
                   t, t + interval '1 day'
            FROM (SELECT {case_cols} FROM generate_series({lo}, {hi - 1}) AS c) AS x""",
            ),
            (
                "smears",
                f"""
            INSERT INTO cases_smear (id, case_id, image, original_filename, sha256, width, height, format, size_bytes, created_at)
            SELECT m + 1, m / 2 + 1, 'smears/' || (m / 2 % {SITES}) || '/' || (m / 2 + 1) || '/' || md5(m::text) || '.jpg',
                   'IMG-' || m || '.jpg', md5(m::text) || md5((m + 1)::text), 257, 257, 'JPEG', 24000 + m % 5000,
                   timestamptz '{BASE_TIME}' + make_interval(secs => (m / 2) * {SECONDS_PER_CASE})
            FROM generate_series({2 * lo}, {2 * hi - 1}) AS m""",
            ),
            (
                "jobs",
                f"""
            INSERT INTO inference_analysisjob (id, smear_id, model_version_id, status, attempts, reason, requested_by_id, enqueued_at,
                   published_at, publish_count, last_enqueue_error, task_id, worker, started_at, finished_at, created_at, updated_at)
            SELECT m + 1, m + 1, {mv}, js, 1,
                   CASE WHEN js = 'failed' THEN 'The image could not be read: the file is damaged.' ELSE '' END,
                   NULL, t, t, 1, '', md5(m::text), 'bench@node:1', CASE WHEN js <> 'queued' THEN t + interval '2 s' END,
                   CASE WHEN js IN ('done', 'failed') THEN t + interval '3 s' END, t, t + interval '3 s'
            FROM (SELECT m, timestamptz '{BASE_TIME}' + make_interval(secs => (m / 2) * {SECONDS_PER_CASE}) AS t,
                         CASE WHEN (m / 2 / {SITES}) % 499 = 9 THEN 'queued' WHEN (m / 2 / {SITES}) % 499 = 8 THEN 'running'
                              WHEN m % 2 = 1 AND (m / 2 / {SITES}) % 211 = 11 THEN 'failed' ELSE 'done' END AS js
                  FROM generate_series({2 * lo}, {2 * hi - 1}) AS m) AS y""",
            ),
            (
                "predictions",
                f"""
            INSERT INTO inference_prediction (id, smear_id, model_version_id, job_id, label, probabilities, heatmap, heatmap_method,
                   queue_wait_ms, inference_ms, total_ms, worker, runtime, is_smear, smear_reasons, flags, created_at)
            SELECT j.id, j.smear_id, j.model_version_id, j.id, (ARRAY['benign','early_pre_b','pre_b','pro_b'])[j.id % 4 + 1],
                   '{{"benign": 0.05, "early_pre_b": 0.85, "pre_b": 0.07, "pro_b": 0.03}}', '', '', 120, 3, 21, 'bench@node:1',
                   'tflite', true, '[]',
                   CASE WHEN j.id % 53 = 0 THEN '["outside validated conditions"]' ELSE '[]' END::jsonb, j.finished_at
            FROM inference_analysisjob j WHERE j.id BETWEEN {2 * lo + 1} AND {2 * hi} AND j.status = 'done'""",
            ),
            (
                "reviews",
                f"""
            INSERT INTO cases_review (id, case_id, kind, diagnosis, comment, reason, ai_suggestion, supersedes_id, signed_by_id, signed_at,
                                      signature_method)
            SELECT 2 * c + 1, c + 1, 'signature', (ARRAY['benign','early_pre_b','pre_b','pro_b','non_diagnostic'])[c % 5 + 1],
                   'Blasts present.', '', 'early_pre_b', NULL, ({pathologist})[s + 1], t + interval '1 day', 'password'
            FROM (SELECT {case_cols} FROM generate_series({lo}, {hi - 1}) AS c) AS x WHERE status IN ('signed', 'amended')
            UNION ALL
            SELECT 2 * c + 2, c + 1, 'amendment', 'pre_b', 'Revised after flow cytometry.', 'Flow cytometry result.', 'early_pre_b',
                   2 * c + 1, ({pathologist})[s + 1], t + interval '2 days', 'totp'
            FROM (SELECT {case_cols} FROM generate_series({lo}, {hi - 1}) AS c) AS x WHERE status = 'amended'""",
            ),
            (
                "audit events",
                f"""
            INSERT INTO audit_auditevent (id, created_at, action, ip_address, detail, actor_id, actor_organisation_id, case_id, patient_id)
            SELECT 11 * c + k + 1, t + make_interval(secs => k * 13),
                   CASE WHEN k = 0 THEN 'submitted' WHEN k = 1 THEN 'analysis_requested'
                        WHEN k = 4 AND status IN ('signed', 'amended') THEN 'signed'
                        WHEN k = 8 AND status = 'amended' THEN 'amended' ELSE 'viewed' END,
                   CASE WHEN k = 1 THEN NULL ELSE '10.1.0.' || (k + 2) END::inet,
                   CASE WHEN k IN (0, 1, 4, 8) THEN '{{}}' ELSE '{{"page": "case-detail"}}' END::jsonb,
                   CASE WHEN k = 1 THEN NULL WHEN k IN (3, 4, 7, 8) THEN ({pathologist})[s + 1] ELSE ({clinician})[s + 1] END,
                   CASE WHEN k = 1 THEN NULL WHEN k IN (3, 4, 7, 8) THEN ({site_lab})[s + 1] ELSE ({sites})[s + 1] END,
                   c + 1, (r / {CASES_PER_PATIENT}) * {SITES} + s + 1
            FROM (SELECT {case_cols}, k FROM generate_series({lo}, {hi - 1}) AS c, generate_series(0, {EVENTS_PER_CASE - 1}) AS k) AS x""",
            ),
        ]
    with connection.cursor() as cursor:
        for name, sql in statements:
            started = time.perf_counter()
            cursor.execute(sql)
            log(f"     {name}: {cursor.rowcount:,} rows in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        # The rule the worker applies (a flagged or not-a-smear image, a failed job), in one UPDATE.
        flagged = cases_flag_recompute(Case.objects.filter(pk__gt=start, pk__lte=stop))
        log(f"     case AI flags: {flagged:,} cases flagged in {time.perf_counter() - started:.1f} s")
        for table in (
            "cases_patient",
            "cases_case",
            "cases_smear",
            "cases_review",
            "audit_auditevent",
            "inference_analysisjob",
            "inference_prediction",
        ):
            floor = APP_EVENT_IDS if table == "audit_auditevent" else 1
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"greatest({floor}, (SELECT max(id) FROM {table})))"
            )
        started = time.perf_counter()
        cursor.execute("VACUUM ANALYZE")
        log(f"     vacuum analyze: {time.perf_counter() - started:.1f} s")


def case_count():
    from cases.models import Case

    return Case.objects.count()


# --------------------------------------------------------------------------------------------------
# Pages


def deep_cursor(url, request_path, position_value, ordering_reverse=False):
    """A DRF cursor pointing at ``position_value`` (what a client holds after following `next`)."""
    from rest_framework.pagination import Cursor, CursorPagination
    from rest_framework.test import APIRequestFactory

    paginator = CursorPagination()
    paginator.base_url = url
    paginator.cursor_query_param = "cursor"
    paginator.request = APIRequestFactory().get(request_path)
    return paginator.encode_cursor(Cursor(offset=0, reverse=ordering_reverse, position=str(position_value)))


def pages(ids):
    """(name, username, url, api) for every list, queue, search and detail page (api: True for a
    token client, "htmx" for a portal page's background refresh, False for a page)."""
    from audit.models import AuditEvent
    from cases.listing import _encode as keyset_token
    from cases.models import Case, Patient
    from inference.models import AnalysisJob

    site, lab = ids["sites"][0], ids["labs"][0]
    site_cases = Case.objects.filter(site_id=site).order_by("-created_at", "-pk")
    newest_signed = site_cases.filter(status="amended").first()
    lab_cases = Case.objects.filter(laboratory_id=lab).order_by("-created_at", "-pk")
    unsigned = lab_cases.exclude(status__in=Case.FINAL_STATUSES).first()
    deep_lab_case = lab_cases[5000:5001].get() if lab_cases.count() > 5000 else lab_cases.last()
    patient = Patient.objects.filter(organisation_id=site).order_by("-pk")[10:11].get()
    audit_visible = AuditEvent.objects.filter(actor_organisation_id=lab).order_by("-created_at", "-pk")
    deep_event = audit_visible[5000:5001].get() if audit_visible.count() > 5000 else audit_visible.last()
    jobs = AnalysisJob.objects.filter(smear__case__laboratory_id=lab).order_by("-enqueued_at", "-pk")
    deep_job = jobs[5000:5001].get() if jobs.count() > 5000 else jobs.last()
    failed = jobs.filter(status="failed").order_by("-finished_at", "-pk")
    deep_failed = failed[min(500, failed.count() - 1)]
    c, p, a = "clinician-site01", "pathologist-lab1", "admin-lab1"
    from django.conf import settings  # noqa: F401  (settings are configured by now)

    cursor = lambda path, value: deep_cursor("http://testserver" + path, path, value).removeprefix("http://testserver")  # noqa: E731
    return [
        # portal: clinician
        ("portal clinician case list p1", c, "/cases/", False),
        ("portal clinician case list p200", c, "/cases/?page=200", False),
        ("portal clinician case list status=signed", c, "/cases/?status=signed", False),
        ("portal clinician case search MRN", c, f"/cases/?q={patient.mrn}", False),
        ("portal clinician case search reference", c, f"/cases/?q={newest_signed.reference}", False),
        ("portal patient list p1", c, "/patients/", False),
        ("portal patient search MRN", c, f"/patients/?q={patient.mrn}", False),
        ("portal patient search name", c, "/patients/?q=Okafor", False),
        ("portal patient detail", c, f"/patients/{patient.pk}/", False),
        ("portal case detail (amended)", c, f"/cases/{newest_signed.pk}/", False),
        ("portal case analysis", c, f"/cases/{newest_signed.pk}/analysis/", False),
        ("portal new case form", c, f"/cases/new/?patient={patient.pk}", False),
        # portal: pathologist
        ("portal pathologist all cases p1", p, "/cases/", False),
        ("portal pathologist all cases p200", p, "/cases/?page=200", False),
        ("portal review queue p1", p, "/review/", False),
        ("portal review queue last page", p, "/review/?page=9999", False),
        ("portal review queue flagged", p, "/review/?flagged=on", False),
        ("portal review queue urgent, assigned to me", p, "/review/?urgent=on&mine=on", False),
        ("portal review queue site + dates", p, f"/review/?site={site}&date_from=2021-01-01&date_to=2030-01-01", False),
        ("portal review queue search MRN", p, f"/review/?q={unsigned.patient.mrn}", False),
        ("portal review queue refresh (htmx)", p, "/review/?urgent=on", "htmx"),
        ("portal case review", p, f"/cases/{unsigned.pk}/review/", False),
        ("portal failed analyses p1", p, "/analysis/failed/", False),
        (
            "portal failed analyses, older page",
            p,
            f"/analysis/failed/?before={keyset_token(deep_failed, 'finished_at')}",
            False,
        ),
        # portal: lab admin
        ("portal audit trail p1", a, "/audit/", False),
        ("portal audit trail 5,000 events in", a, f"/audit/?before={keyset_token(deep_event)}", False),
        ("portal audit trail action=signed", a, "/audit/?action=signed", False),
        ("portal audit trail (site admin)", "admin-site01", "/audit/", False),
        ("portal audit trail action=sign_refused (none)", a, "/audit/?action=sign_refused", False),
        ("portal users", a, "/accounts/users/", False),
        # API
        ("api cases p1", c, "/api/cases/", True),
        ("api cases (pathologist) p1", p, "/api/cases/", True),
        (
            "api cases (pathologist) cursor 5,000 in",
            p,
            cursor("/api/cases/", deep_lab_case.created_at.isoformat()),
            True,
        ),
        ("api cases ?page=100 (page numbers)", p, "/api/cases/?page=100", True),
        ("api cases status=awaiting_review", p, "/api/cases/?status=awaiting_review", True),
        ("api case detail", c, f"/api/cases/{newest_signed.pk}/", True),
        ("api case analysis", c, f"/api/cases/{newest_signed.pk}/analysis/", True),
        ("api patients p1", c, "/api/patients/", True),
        ("api patients search MRN", c, f"/api/patients/?search={patient.mrn}", True),
        ("api review queue p1", p, "/api/review-queue/", True),
        ("api audit events p1", a, "/api/audit-events/", True),
        ("api audit events cursor 5,000 in", a, cursor("/api/audit-events/", deep_event.created_at.isoformat()), True),
        ("api audit events of a case", a, f"/api/audit-events/?case={unsigned.pk}", True),
        ("api analysis jobs p1", p, "/api/analysis/jobs/?page_size=25", True),
        ("api analysis jobs cursor 5,000 in", p, cursor("/api/analysis/jobs/", deep_job.enqueued_at.isoformat()), True),
        ("api analysis jobs failed", p, "/api/analysis/jobs/?status=failed", True),
    ]


def second_factor_verified(client, user):
    """A pathologist's or admin's session as after their authenticator code (django-otp's own key)."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from security.policy import requires_second_factor

    if requires_second_factor(user):
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
        device = device or TOTPDevice.objects.create(user=user, name="bench", confirmed=True)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()


def measure(pages_list, args):
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from rest_framework.authtoken.models import Token

    from accounts.models import User

    results = {}
    clients = {}
    for name, username, url, api in pages_list:
        if args.only and not any(word in name for word in args.only):
            continue
        key = (username, api)
        if key not in clients:
            user = User.objects.get(username=username)
            if api == "htmx":  # a portal page's background refresh: the fragment alone
                clients[key] = Client(HTTP_HX_REQUEST="true", HTTP_X_TELEDIAG_BACKGROUND="1")
                clients[key].force_login(user)
            elif api:
                token, _ = Token.objects.get_or_create(user=user)
                clients[key] = Client(HTTP_AUTHORIZATION=f"Token {token.key}")
            else:
                clients[key] = Client()
                clients[key].force_login(user)
            if not api or api == "htmx":
                second_factor_verified(clients[key], user)
        client = clients[key]
        for _ in range(args.warmup):
            response = client.get(url)
        if response.status_code != 200:
            log(f"   !! {name}: {url} answered {response.status_code}: {response.content[:300]!r}")
            results[name] = {"status": response.status_code}
            continue
        times, db_times, cpu_times = [], [], []
        for _ in range(args.requests):
            with CaptureQueriesContext(connection) as queries:
                started, cpu0 = time.perf_counter(), time.process_time()
                response = client.get(url)
                times.append((time.perf_counter() - started) * 1000)
                cpu_times.append((time.process_time() - cpu0) * 1000)
            db_times.append(sum(float(q["time"]) for q in queries.captured_queries) * 1000)
        row = {
            "status": response.status_code,
            "p50_ms": percentile(times, 50),
            "p95_ms": percentile(times, 95),
            "db_p50_ms": percentile(db_times, 50),
            "cpu_p50_ms": percentile(cpu_times, 50),
            "queries": len(queries),
            "bytes": len(response.content),
            "url": url,
        }
        results[name] = row
        log(
            f"   {name:48s} {row['p50_ms']:7.1f} {row['p95_ms']:7.1f} ms (SQL {row['db_p50_ms']:6.1f}, "
            f"CPU {row['cpu_p50_ms']:5.1f})"
            f"  {row['queries']:3d} q  {row['bytes']:8,d} B"
        )
        if args.explain:
            slowest = max(queries.captured_queries, key=lambda q: float(q["time"]))
            log(f"      slowest ({slowest['time']} s): {slowest['sql'][:600]}")
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN ANALYZE " + slowest["sql"])
                for (line,) in cursor.fetchall()[:25]:
                    log(f"        {line}")
    return results


def table(all_results, sizes):
    names = []
    for size in sizes:
        for name in all_results.get(size, {}):
            if name not in names:
                names.append(name)
    head = (
        "| page / endpoint | "
        + " | ".join(f"{size:,} cases: p50 / p95 ms (SQL, CPU p50), queries, KB" for size in sizes)
        + " |"
    )
    lines = [head, "|---|" + "---|" * len(sizes)]
    for name in names:
        cells = []
        for size in sizes:
            row = all_results.get(size, {}).get(name)
            if not row:
                cells.append("—")
            elif "p95_ms" not in row:
                cells.append(f"HTTP {row['status']}")
            else:
                mark = "**" if row["p95_ms"] > 50 else ""
                cells.append(
                    f"{row['p50_ms']:.1f} / {mark}{row['p95_ms']:.1f}{mark} ({row['db_p50_ms']:.1f}, "
                    f"{row['cpu_p50_ms']:.1f}), "
                    f"{row['queries']} q, {row['bytes'] / 1024:.1f}"
                )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    prepare_environment(args)
    if not args.reuse:
        admin_sql(args, f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
        admin_sql(args, f'CREATE DATABASE "{args.db}"')
    import django

    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    call_command("collectstatic", verbosity=0, interactive=False)
    from accounts.models import Organisation

    if not Organisation.objects.exists():
        build_world()
    ids = world_ids()
    log(f"# bench/scale.py — {machine_line()}")
    all_results, timings = {}, {}
    try:
        for size in sorted(args.sizes):
            have = case_count()
            if have < size:
                log(f"== growing {have:,} → {size:,} cases")
                started = time.perf_counter()
                grow(ids, have, size)
                timings[size] = time.perf_counter() - started
                log(f"   grown in {timings[size]:.0f} s")
            elif have > size:
                log(f"== the database has {have:,} cases (> {size:,}): measured as it is")
            from django.db import connection

            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_size_pretty(pg_database_size(current_database())), (SELECT count(*) FROM audit_auditevent)"
                )
                db_size, events = cursor.fetchone()
            log(f"== measuring at {case_count():,} cases, {events:,} audit events, database {db_size}")
            with Contention() as contention:
                all_results[size] = measure(pages(ids), args)
            log(f"   ({contention.describe()})")
            for share, nice, cmd in top_other_processes():
                log(f"     busy: {share:.0%} nice {nice} {cmd}")
    finally:
        if not args.keep:
            from django.db import connections

            connections.close_all()
            admin_sql(args, f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
    print()
    print(table(all_results, sorted(all_results)))
    if timings:
        print("\nData generation: " + ", ".join(f"{size:,} cases {seconds:.0f} s" for size, seconds in timings.items()))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"results": {str(k): v for k, v in all_results.items()}, "growth_s": timings}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
