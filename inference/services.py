"""AI analysis: requesting it, retrying it, re-running it, and keeping nothing stuck.

The flow, with the database as the only source of truth:

1. ``case_analysis_request`` (on ``cases.signals.case_submitted``, inside the submission's transaction)
   creates one queued ``AnalysisJob`` per smear and, *after the transaction commits*, publishes one
   task message per job carrying the job id only. With no model to use, no job is created and the
   case shows "waiting for a model"; the sweeper analyses it once a model is active.
2. Publishing never fails the caller and never hangs: with the broker down, each job stays queued
   with ``last_enqueue_error`` recorded, and the sweeper publishes it again later.
3. A worker claims a job with a conditional update (see ``inference.tasks``), writes one
   ``Prediction`` and moves the case: analysing when work starts, awaiting review when none of its
   jobs is queued or running. The case is only ever moved with ``cases.services.case_move``.
4. ``sweep`` (``manage.py sweep_analysis`` and the beat task) re-publishes jobs queued longer than
   ``INFERENCE_REQUEUE_AFTER_S`` (or whose publish failed), recovers jobs left "running" by a
   worker that vanished, and starts cases that were waiting for a model.
"""

import logging
import os
import socket
import threading
from datetime import timedelta
from functools import lru_cache, partial

from celery.utils import uuid as celery_uuid
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import BooleanField, Count, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit
from cases.models import Case, Smear
from core import permissions
from core.errors import DomainError, InvalidTransition
from core.permissions import require_role
from core.task_lookup import task_named
from inference import flagging, publishing
from inference.models import AnalysisJob
from inference.signals import analysis_failed
from training.models import ModelVersion

logger = logging.getLogger(__name__)

INFERENCE_QUEUE = "inference"
ANALYSE_SMEAR_TASK = "inference.analyse_smear"  # inference.tasks.analyse_smear: one job
ANALYSE_SMEARS_TASK = "inference.analyse_smears"  # inference.tasks.analyse_smears: a case's jobs
# Publishing with the broker down: one quick retry, then give up (the sweeper tries again later).
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
# A job never handed to the broker is left alone this long (its publish may be under way).
PUBLISH_GRACE_S = 10
# Extra time past the hard time limit before a "running" job is presumed abandoned.
STALE_RUNNING_GRACE_S = 60
# Cases that can still get an AI analysis (a signed case keeps the one it had).
ANALYSABLE_CASE_STATUSES = (Case.Status.SUBMITTED, Case.Status.ANALYSING, Case.Status.AWAITING_REVIEW)


# --- Requesting analysis ----------------------------------------------------------------------


def model_version_id_for(case, model_version=None):
    """The id of the version to analyse ``case`` with: the one given, the one chosen at submission,
    or the active one (None when there is none)."""
    if model_version is not None:
        return model_version.pk
    return case.requested_model_version_id or ModelVersion.active_id()


def case_analysis_request(case, model_version=None, *, requested_by=None, smears=None):
    """Queue the analysis of every smear of ``case``; publish after the surrounding transaction commits.

    Returns the jobs (an empty list when there is no model: the case waits for one). Jobs that
    already exist for a smear and version are reused: done ones are left alone, failed ones are
    queued again, pending ones are published again (harmless: only one worker can claim a job).
    ``smears``: the smears a submission has just created in this transaction (no job can exist for
    them yet): their jobs are inserted in one statement.
    """
    version_id = model_version_id_for(case, model_version)
    if version_id is None:
        logger.info("No active model: case %s waits for one (no job queued).", case.pk)
        return []
    requested_by = requested_by or case.submitted_by
    if smears is not None:
        now = timezone.now()
        jobs = AnalysisJob.objects.bulk_create(
            [
                AnalysisJob(smear=smear, model_version_id=version_id, requested_by=requested_by, enqueued_at=now)
                for smear in smears
            ]
        )
    else:
        jobs = _queue_jobs(case.smears.all(), version_id, requested_by=requested_by)
    publish_on_commit([job.pk for job in jobs if job.status == AnalysisJob.Status.QUEUED])
    return jobs


def _queue_jobs(smears, version_id, requested_by=None):
    now = timezone.now()
    jobs = []
    for smear in smears:
        # Usually the pair is new: INSERT straight away (no SELECT first); a savepoint keeps an
        # existing pair (re-run, retry, concurrent request) from spoiling the surrounding transaction.
        try:
            with transaction.atomic():
                job = AnalysisJob.objects.create(
                    smear=smear,
                    model_version_id=version_id,
                    requested_by=requested_by,
                    enqueued_at=now,
                )
            created = True
        except IntegrityError:
            job, created = AnalysisJob.objects.get(smear=smear, model_version_id=version_id), False
        if not created and job.status == AnalysisJob.Status.FAILED:
            _reset_failed(job, requested_by, now, case_id=smear.case_id)
            job.refresh_from_db()
        jobs.append(job)
    return jobs


def _reset_failed(job, user, now, *, case_id):
    """Failed → queued, attempts reset; the case's AI flag follows (this failure no longer counts)."""
    changed = AnalysisJob.objects.filter(pk=job.pk, status=AnalysisJob.Status.FAILED).update(
        status=AnalysisJob.Status.QUEUED,
        attempts=0,
        reason="",
        task_id="",
        started_at=None,
        finished_at=None,
        enqueued_at=now,
        published_at=None,
        last_enqueue_error="",
        requested_by=user,
        updated_at=now,
    )
    if changed:
        flagging.case_flag_refresh(case_id)
    return changed


def publish_on_commit(job_ids):
    """Publish one case's jobs in one message once the current transaction commits (at once outside one)."""
    job_ids = list(job_ids)
    if job_ids:
        transaction.on_commit(partial(publish_jobs, job_ids, together=True), robust=True)


class _BrokerConnections(threading.local):
    """One broker connection per thread and process, for the broker the settings name *now*.

    Opening a connection (and declaring the queue on it) cost about as much as the rest of an
    upload request; it is reused by the next publish of the same thread. A connection never
    crosses a fork (the key holds the pid) or a change of broker settings (the key holds them),
    and one that failed is dropped, so the next publish connects afresh.
    """

    key = None
    connection = None

    def get(self, app):
        options = publishing.connection_options(app)  # every socket operation bounded
        key = (
            os.getpid(),
            app.conf.broker_url,
            repr(sorted((app.conf.broker_transport_options or {}).items())),
            repr(options),
        )
        if self.connection is not None and self.key == key:
            return self.connection
        self.drop()
        self.connection, self.key = app.connection_for_write(**options), key
        return self.connection

    def drop(self):
        connection, self.connection, self.key = self.connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail too
                logger.debug("Closing the broker connection failed", exc_info=True)


_broker = _BrokerConnections()


def publish_jobs(job_ids, *, back_off=True, together=False):
    """Hand the jobs to the broker: one message per job, or with ``together`` (one case's smears) one
    message for them all, so that the worker pays one hand-off, one claim and one move of the case.
    Never raises; returns the number of jobs published.

    The first failure (broker down) is recorded on that job and on the rest of the batch, which are
    not tried: each try would only wait for the same dead broker. The sweeper publishes them later
    (one message per job: unrelated jobs go to whichever workers are free).
    The connection is kept for the thread's next publish (see _BrokerConnections); socket timeouts
    bound each try and the retry policy the tries (inference.publishing); after a failure, this
    process skips the broker for BROKER_PUBLISH_BACKOFF_S and only records that it did.
    ``back_off=False`` (the sweeper) tries even then.
    """
    job_ids = list(job_ids)
    if not job_ids:
        return 0
    if back_off and not publishing.breaker.allows():  # the sweeper (back_off=False) always tries
        _record_publish_error(job_ids, f"not tried: the broker failed just before ({publishing.breaker.error()})")
        return 0
    if together and len(job_ids) > 1:
        messages = [(task_named(ANALYSE_SMEARS_TASK), job_ids, job_ids)]
    else:
        messages = [(task_named(ANALYSE_SMEAR_TASK), job_id, [job_id]) for job_id in job_ids]
    done = []  # (message id, its job ids)
    app = messages[0][0].app
    for task, argument, ids in messages:
        message_id = celery_uuid()
        try:
            task.apply_async(
                args=[argument],
                task_id=message_id,
                queue=INFERENCE_QUEUE,
                connection=_broker.get(app),
                retry=True,
                retry_policy=PUBLISH_RETRY_POLICY,
                **publishing.publish_options(app),
            )
        except Exception as exc:  # noqa: BLE001 - any broker failure: record it, keep the job queued
            _broker.drop()
            error = f"{type(exc).__name__}: {exc}"[:1000] or type(exc).__name__
            publishing.breaker.trip(error)
            not_published = job_ids[sum(len(published) for _, published in done) :]
            logger.warning("Could not publish analysis job(s) %s: %s", not_published, error)
            _record_publish_error(not_published, error)
            break
        done.append((message_id, ids))
    else:
        publishing.breaker.reset()
    if done:
        _record_published(done, timezone.now())
    return sum(len(ids) for _, ids in done)


def _record_published(messages, now):
    """One UPDATE for the published (message id, job ids), its SQL built once per shape: the ORM
    compiled it on every upload, about three quarters of the statement's CPU."""
    counts = tuple(len(ids) for _, ids in messages)
    if len(messages) == 1:
        assigned = [messages[0][0]]
    else:
        assigned = [value for message_id, ids in messages for value in (*ids, message_id)]
    params = [now, now, *assigned, *(job_id for _, ids in messages for job_id in ids)]
    with connection.cursor() as cursor:
        cursor.execute(_record_published_sql(counts), params)


@lru_cache(maxsize=64)
def _record_published_sql(counts):
    """``counts``: the number of jobs of each message, in order."""

    def column(name):
        return connection.ops.quote_name(AnalysisJob._meta.get_field(name).column)

    count_column, id_column = column("publish_count"), column("id")
    placeholders = ", ".join(["%s"] * sum(counts))
    if len(counts) == 1:
        message = "%s"
    else:  # each job gets the id of the message that carried it
        cases = " ".join(f"WHEN {id_column} IN ({', '.join(['%s'] * count)}) THEN %s" for count in counts)
        message = f"CASE {cases} END"
    return (
        f"UPDATE {connection.ops.quote_name(AnalysisJob._meta.db_table)} SET {column('published_at')} = %s, "
        f"{count_column} = {count_column} + 1, {column('last_enqueue_error')} = '', "
        f"{column('updated_at')} = %s, {column('published_message_id')} = {message} "
        f"WHERE {id_column} IN ({placeholders})"
    )


def _record_publish_error(job_ids, error):
    AnalysisJob.objects.filter(pk__in=job_ids).update(
        last_enqueue_error=f"{timezone.now():%Y-%m-%d %H:%M:%S} {error}"[:1000], updated_at=timezone.now()
    )


# --- What people can do -----------------------------------------------------------------------


def job_retry(*, user, job, request=None):
    """Queue a failed job again (attempts reset). Pathologists and lab admins of the laboratory."""
    case = job.smear.case
    require_role(
        permissions.retries_analysis(user, case),
        "Only pathologists and lab admins of the reading laboratory retry an analysis.",
    )
    now = timezone.now()
    with transaction.atomic():
        if not _reset_failed(job, user, now, case_id=case.pk):
            job.refresh_from_db()
            raise InvalidTransition(
                f"Only a failed analysis can be retried; this one is {job.get_status_display().lower()}."
            )
        audit(
            AuditEvent.Action.ANALYSIS_REQUESTED,
            actor=user,
            case=case,
            request=request,
            kind="retry",
            job=job.pk,
            smear=job.smear_id,
            model_version=job.model_version.name,
        )
        publish_on_commit([job.pk])
    job.refresh_from_db()
    return job


def case_rerun(*, user, case, model_version, request=None):
    """Analyse every smear of ``case`` again with ``model_version`` (a pathologist of the laboratory)."""
    require_role(
        permissions.is_case_pathologist(user, case), "Only pathologists of the reading laboratory re-run an analysis."
    )
    if model_version is None:
        raise DomainError("Choose the model version to run.", details={"model_version": ["This field is required."]})
    with transaction.atomic():
        jobs = _queue_jobs(case.smears.all(), model_version.pk, requested_by=user)
        audit(
            AuditEvent.Action.ANALYSIS_REQUESTED,
            actor=user,
            case=case,
            request=request,
            kind="rerun",
            model_version=model_version.name,
            smears=len(jobs),
        )
        publish_on_commit([job.pk for job in jobs if job.status == AnalysisJob.Status.QUEUED])
    return jobs


def rerun_choices():
    """Model versions a pathologist may pick for a re-run (newest first)."""
    return ModelVersion.objects.order_by("-is_active", "-created_at")


# --- Case status (called by the worker) -------------------------------------------------------


def case_started(case_id, status=None):
    """Work on the case started: submitted (or awaiting review, on a re-run) → analysing.

    ``status``: the case's status as the caller just read it (the worker's claim reads it with the
    job), which saves a query when the case is already analysing; the move itself is conditional.
    """
    from cases.services import case_move

    startable = (Case.Status.SUBMITTED, Case.Status.AWAITING_REVIEW)
    if status is not None and status not in startable:
        return None
    case = Case.objects.get(pk=case_id) if status is None else Case(pk=case_id, status=status)
    if case.status in startable:
        try:
            case_move(case, Case.Status.ANALYSING)
        except InvalidTransition:  # signed meanwhile: the AI only advises, the signature stands
            pass
    return case


def case_maybe_finished(case_id):
    """Once none of the case's jobs is queued or running: analysing (or submitted) → awaiting review.
    True when this call moved the case.

    One conditional UPDATE (the pending check is its NOT EXISTS), called after the finishing job's
    own update is committed: of two jobs finishing together, the statement that starts after the
    other's commit sees no pending job, so at least the last one moves the case. A case signed
    meanwhile does not move.
    """
    from cases.services import case_move_if

    return case_move_if(case_id, Case.Status.AWAITING_REVIEW, _no_pending_job())


def _no_pending_job():
    """On Case: none of the case's jobs is queued or running. The SQL of
    ``~Exists(AnalysisJob.objects.filter(smear__case_id=OuterRef("pk"), status__in=PENDING_STATUSES))``,
    written out: the ORM's compilation of that subquery cost the worker ~0.5 ms of CPU per image."""
    q = connection.ops.quote_name
    job, smear, case = AnalysisJob._meta.db_table, Smear._meta.db_table, Case._meta.db_table
    placeholders = ", ".join(["%s"] * len(AnalysisJob.PENDING_STATUSES))
    return RawSQL(
        f"NOT EXISTS (SELECT 1 FROM {q(job)} INNER JOIN {q(smear)} ON {q(job)}.{q('smear_id')} = {q(smear)}.{q('id')} "
        f"WHERE {q(smear)}.{q('case_id')} = {q(case)}.{q('id')} AND {q(job)}.{q('status')} IN ({placeholders}))",
        tuple(status.value for status in AnalysisJob.PENDING_STATUSES),
        output_field=BooleanField(),
    )


def job_fail(job_id, reason, *, from_statuses=(AnalysisJob.Status.RUNNING,), task_id=None):
    """Mark a job failed with a reason (conditional: only from ``from_statuses``); the case is then
    flagged for the pathologist (inference.flagging)."""
    now = timezone.now()
    jobs = AnalysisJob.objects.filter(pk=job_id, status__in=from_statuses)
    if task_id is not None:
        jobs = jobs.filter(task_id=task_id)
    with transaction.atomic():  # the failure and the case's AI flag together (a retried call redoes both)
        changed = jobs.update(status=AnalysisJob.Status.FAILED, reason=reason[:2000], finished_at=now, updated_at=now)
        if changed:
            case_id = AnalysisJob.objects.filter(pk=job_id).values_list("smear__case_id", flat=True).first()
            flagging.cases_flag_raise([case_id])
    if changed:
        logger.warning("Analysis job %s failed: %s", job_id, reason)
        analysis_failed.send(sender=AnalysisJob, job_id=job_id, case_id=case_id, reason=reason[:2000])
    return bool(changed)


# --- The sweeper ------------------------------------------------------------------------------


def stale_running_after_s():
    return int(getattr(settings, "CELERY_TASK_TIME_LIMIT", 300)) + STALE_RUNNING_GRACE_S


def sweep(*, requeue_after_s=None, now=None):
    """Make sure no analysis stays stuck. Safe to run at any time, from several places at once.

    - queued jobs whose last publish (or whose queueing, if never published) is older than
      ``requeue_after_s`` (default INFERENCE_REQUEUE_AFTER_S), and queued jobs whose last publish
      failed, are published again (a duplicate message is harmless);
    - running jobs whose lease expired (inference.leases: their worker stopped renewing it) were
      abandoned by a worker that vanished: they are queued again, or failed once they used all
      their attempts;
    - smears of unsigned cases that have no job at all (submitted while no model was active) are
      queued with the now active model;
    - cases still "analysing" with no job pending move on to awaiting review.
    Returns counts of what it did.
    """
    now = now or timezone.now()
    requeue_after_s = settings.INFERENCE_REQUEUE_AFTER_S if requeue_after_s is None else requeue_after_s
    counts = {"republished": 0, "recovered": 0, "failed_abandoned": 0, "waiting_cases_started": 0}

    # 1. Running with an expired lease (or, claimed without one, far longer than any task may run):
    # its worker is gone.
    stale_before = now - timedelta(seconds=stale_running_after_s())
    recovered = []
    abandoned = Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True, started_at__lt=stale_before)
    for job in AnalysisJob.objects.filter(abandoned, status=AnalysisJob.Status.RUNNING):
        if job.attempts >= settings.INFERENCE_MAX_ATTEMPTS:
            reason = (
                f"The worker running this analysis stopped without reporting back {job.attempts} times "
                f"(crash, out of memory or shut down); giving up. Retry it once the workers are healthy."
            )
            if job_fail(job.pk, reason, task_id=job.task_id):
                counts["failed_abandoned"] += 1
                case_maybe_finished(job.smear.case_id)
        else:
            changed = AnalysisJob.objects.filter(
                pk=job.pk, status=AnalysisJob.Status.RUNNING, task_id=job.task_id
            ).update(
                status=AnalysisJob.Status.QUEUED,
                task_id="",
                published_at=None,
                updated_at=now,
                last_enqueue_error="",
                reason="",
                lease_expires_at=None,
            )
            if changed:
                recovered.append(job.pk)
    counts["recovered"] = len(recovered)
    publish_jobs(recovered, back_off=False)

    # 2. Never reached the broker, or queued too long (only as many as the broker lacks).
    due_ids = _jobs_to_publish(now, requeue_after_s, exclude=recovered)
    if due_ids:
        counts["republished"] = publish_jobs(due_ids, back_off=False)

    # 3. Cases submitted while there was no model.
    if ModelVersion.active_id() is not None:
        waiting = (
            Case.objects.filter(status__in=ANALYSABLE_CASE_STATUSES)
            .filter(smears__isnull=False)
            .exclude(smears__in=Smear.objects.filter(analysis_jobs__isnull=False))
            .distinct()
        )
        for case in waiting:
            with transaction.atomic():
                jobs = case_analysis_request(case)
            if jobs:
                counts["waiting_cases_started"] += 1
    # 4. Cases left "analysing" with nothing pending (their last worker died before moving them).
    counts["cases_finished"] = 0
    stuck = (
        Case.objects.filter(status=Case.Status.ANALYSING)
        .exclude(smears__analysis_jobs__status__in=AnalysisJob.PENDING_STATUSES)
        .values_list("pk", flat=True)
    )
    for case_id in stuck:
        counts["cases_finished"] += int(case_maybe_finished(case_id))

    if any(counts.values()):
        logger.info("Analysis sweep: %s", counts)
    return counts


def _jobs_to_publish(now, requeue_after_s, exclude=()):
    """Queued jobs whose message the broker may not have, oldest first.

    - never published (past the grace of a publish under way), or whose last publish failed: all;
    - published longer than ``requeue_after_s`` ago: only the jobs of as many messages as the
      broker's queue lacks (the messages of queued, published jobs, a case's smears sharing one,
      minus the messages waiting), so that a backlog without consumers does not gain a message per
      job at every sweep; when the broker cannot say, all of them.
    """
    analyse_smear = task_named(ANALYSE_SMEAR_TASK)
    queued = AnalysisJob.objects.filter(status=AnalysisJob.Status.QUEUED).exclude(pk__in=list(exclude))
    unpublished = list(
        queued.filter(
            ~Q(last_enqueue_error="")
            | Q(published_at__isnull=True, enqueued_at__lte=now - timedelta(seconds=PUBLISH_GRACE_S))
        )
        .order_by("enqueued_at", "pk")
        .values_list("pk", flat=True)
    )
    cutoff = now - timedelta(seconds=requeue_after_s)
    stale = (
        queued.filter(last_enqueue_error="")
        .annotate(last_try=Coalesce("published_at", "enqueued_at"))
        .filter(last_try__lte=cutoff)
        .exclude(pk__in=unpublished)
        .order_by("last_try", "published_message_id", "pk")
    )
    if not stale.exists():
        return unpublished
    depth = publishing.queue_depth(analyse_smear.app, INFERENCE_QUEUE)
    if depth is None:
        return unpublished + list(stale.values_list("pk", flat=True))
    in_broker = queued.filter(last_enqueue_error="", published_at__isnull=False).aggregate(
        shared=Count("published_message_id", distinct=True, filter=~Q(published_message_id="")),
        own=Count("pk", filter=Q(published_message_id="")),  # published before messages had ids
    )
    lacking = in_broker["shared"] + in_broker["own"] - depth
    if lacking <= 0:
        return unpublished
    picked, messages = [], set()
    for job_id, message_id in stale.values_list("pk", "published_message_id")[: lacking * settings.UPLOAD_MAX_FILES]:
        message = message_id or job_id
        if message not in messages:
            if len(messages) == lacking:
                break
            messages.add(message)
        picked.append(job_id)
    return unpublished + picked


def worker_name():
    return f"{socket.gethostname()}:{os.getpid()}"


__all__ = [
    "AnalysisJob",
    "case_analysis_request",
    "case_rerun",
    "job_retry",
    "publish_jobs",
    "publish_on_commit",
    "sweep",
    "case_started",
    "case_maybe_finished",
    "job_fail",
    "model_version_id_for",
    "rerun_choices",
]
