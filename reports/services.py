"""Report versions: made once per signed diagnosis, stored, and read back as they were issued."""

import hashlib
import logging

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from cases.models import Review
from core.errors import DomainError
from core.task_lookup import task_named
from inference import publishing
from reports.content import report_content
from reports.fhir import report_bundle
from reports.models import ReportVersion
from reports.pdf import render_pdf
from reports.push import PushFailed, post_bundle

logger = logging.getLogger(__name__)

PUSH_TASK = "reports.push_fhir"


class NotSigned(DomainError):
    """The case has no signed diagnosis yet, so there is no report to give."""

    code = "not_signed"
    http_status = 409

    def __init__(self, case):
        super().__init__(
            f"Case {case.reference} is not signed yet: its report exists once a pathologist signs the diagnosis."
        )


class NoSuchVersion(DomainError):
    code = "not_found"
    http_status = 404


class ReportUnreadable(DomainError):
    """The stored PDF is missing or does not match the checksum recorded when it was issued."""

    code = "report_unreadable"
    http_status = 500


def report_version_create(review):
    """The stored report version of ``review``, rendered and stored now if it has none yet.

    Idempotent and safe to call from two processes at once: the unique review (and number) lets
    one row win; the loser removes its file and returns the winner's.
    """
    existing = ReportVersion.objects.filter(review=review).select_related("case").first()
    if existing is not None:
        return existing
    content = report_content(review)
    data = render_pdf(content)
    version = ReportVersion(
        case=review.case,
        review=review,
        number=content.number,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        model_version_id=content.ai.model_version_id if content.ai else None,
    )
    version.pdf.save("report.pdf", ContentFile(data), save=False)
    try:
        with transaction.atomic():
            version.save()
    except IntegrityError:
        version.pdf.storage.delete(version.pdf.name)
        return ReportVersion.objects.select_related("case").get(review=review)
    logger.info("Report %s v%s stored (%s bytes)", review.case.reference, version.number, version.size_bytes)
    return version


def report_versions(case):
    """Every report version of ``case``, oldest first; versions missing (a failed render at signing)
    are made now, in signing order, so numbers and contents match the signed diagnoses."""
    reviews = list(Review.objects.filter(case=case).select_related("case").order_by("signed_at", "pk"))
    if not reviews:
        raise NotSigned(case)
    stored = {version.review_id: version for version in ReportVersion.objects.filter(case=case)}
    versions = []
    for review in reviews:
        version = stored.get(review.pk)
        if version is None:  # its issue at signing failed: issue (and push) it now
            version = report_version_create(review)
            queue_fhir_push(version)
        versions.append(version)
    return versions


def report_version(case, number=None):
    """Version ``number`` of the case's report (the latest when None)."""
    versions = report_versions(case)
    if number is None:
        return versions[-1]
    try:
        number = int(number)
    except (TypeError, ValueError):
        raise DomainError(
            f"version must be a whole number from 1 to {len(versions)}.", details={"version": ["Not a number."]}
        ) from None
    if not 1 <= number <= len(versions):
        raise NoSuchVersion(f"Case {case.reference} has report versions 1 to {len(versions)}; there is no {number}.")
    return versions[number - 1]


def read_pdf(version):
    """The stored bytes of ``version``, checked against the checksum recorded when it was issued."""
    try:
        with version.pdf.storage.open(version.pdf.name, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        logger.error("Report %s v%s cannot be read: %s", version.case_id, version.number, exc)
        raise ReportUnreadable("The stored report cannot be read right now; try again later.") from None
    if hashlib.sha256(data).hexdigest() != version.sha256:
        logger.error("Report %s v%s does not match its checksum", version.case_id, version.number)
        raise ReportUnreadable("The stored report does not match its checksum; ask the laboratory.")
    return data


def fhir_bundle(case, number=None, *, base_url=""):
    """The FHIR R4 Bundle of version ``number`` (default the latest) of the case's report."""
    return version_bundle(report_version(case, number), base_url=base_url)


def version_bundle(version, *, base_url=""):
    return report_bundle(report_content(version.review), version, read_pdf(version), base_url=base_url)


# --- Push to the hospital's FHIR server -------------------------------------------------------


def fhir_push_enabled():
    return bool(settings.FHIR_PUSH_URL)


def queue_fhir_push(version):
    """Hand the push of ``version`` to a worker (never raises: a broker failure is recorded)."""
    if not fhir_push_enabled():
        return False
    task = task_named(PUSH_TASK)
    app = task.app
    try:
        with app.connection_for_write(**publishing.connection_options(app)) as connection:
            task.apply_async(args=[version.pk], connection=connection, **publishing.publish_options(app))
    except Exception as exc:  # noqa: BLE001 - the report exists; only its push waits
        error = f"not queued: {type(exc).__name__}: {exc}"[:1000]
        logger.warning("Could not queue the FHIR push of report %s v%s: %s", version.case_id, version.number, error)
        ReportVersion.objects.filter(pk=version.pk).update(fhir_push_error=error)
        return False
    return True


def unpushed_versions():
    """Report versions the FHIR server has not accepted yet, oldest first."""
    return ReportVersion.objects.filter(fhir_pushed_at__isnull=True).select_related("case").order_by("created_at", "pk")


def fhir_push(version_id):
    """POST one report version's bundle to TELEDIAG_FHIR_PUSH_URL. True once accepted (now or
    before: a second call after success does nothing); a failure is recorded and re-raised
    (reports.push.PushFailed says whether a retry may help)."""
    version = ReportVersion.objects.select_related("case", "review").filter(pk=version_id).first()
    if version is None or version.fhir_pushed_at is not None or not fhir_push_enabled():
        return version is not None and version.fhir_pushed_at is not None
    ReportVersion.objects.filter(pk=version.pk).update(fhir_push_attempts=F("fhir_push_attempts") + 1)
    try:
        bundle = version_bundle(version, base_url=settings.PUBLIC_URL)
        post_bundle(
            bundle, settings.FHIR_PUSH_URL, token=settings.FHIR_PUSH_TOKEN, timeout=settings.FHIR_PUSH_TIMEOUT_S
        )
    except PushFailed as exc:
        ReportVersion.objects.filter(pk=version.pk).update(fhir_push_error=str(exc)[:1000])
        raise
    ReportVersion.objects.filter(pk=version.pk).update(fhir_pushed_at=timezone.now(), fhir_push_error="")
    logger.info("Report %s v%s pushed to the FHIR server", version.case.reference, version.number)
    return True
