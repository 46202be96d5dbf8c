"""Claiming analysis jobs for a worker: the conditional update and the job's rows, in one statement.

A worker needs, for each job it takes, the job with its smear, the smear's case and the model
version (``AnalysisJob.objects.with_version().select_related("smear__case")``). On PostgreSQL the
claim is ONE statement: the conditional ``UPDATE … RETURNING`` in a WITH clause, joined to those
rows; the worker's CPU per image went from ~2.6 ms (UPDATE, then the ORM's SELECT) to ~0.7 ms.
The UPDATE's condition is what makes a claim exclusive, exactly as before: of two workers, the
second one's UPDATE waits for the first, re-checks the row (now running) and changes nothing.
Other databases (SQLite in the demo) run the same UPDATE and then the ORM's SELECT.

- ``claim_queued``: the queued ones of the given jobs (a message's), queued → running (attempts + 1);
- ``claim_waiting``: up to ``limit`` more queued jobs of a model version, oldest first, rows
  locked with ``FOR UPDATE SKIP LOCKED`` (two workers never take the same job, none waits);
- ``job_with_rows``: a job with the same rows, without claiming it (None when it is gone).

The model version comes without its OOD parameters (``ModelVersion.ood``, ~230 KB of JSON for the
shipped model: decoding them and PostgreSQL's encoding cost ~1 ms of CPU per job). The statement
brings their digest instead, as ``version.ood_digest`` ("" when the version has none), which is
all ``training.gates`` needs to reuse the detector it built; the column loads on first use.
"""

from functools import cache

from django.db import connection, transaction
from django.db.models import F

from cases.models import Case, Smear
from inference.models import AnalysisJob
from training.models import ModelVersion

# The tables read with a job, in the order of their columns in a row: (model, SQL alias).
_TABLES = ((AnalysisJob, "claimed"), (Smear, "smear"), (Case, "smear_case"), (ModelVersion, "version"))
# Columns left out of the row (deferred on the instance); the OOD digest follows the tables' columns.
_DEFERRED = {ModelVersion: ("ood",)}


def _one_statement():
    """Whether the database runs an UPDATE inside WITH, joined to other tables (PostgreSQL)."""
    return connection.vendor == "postgresql"


def _jobs_with_rows():
    return AnalysisJob.objects.with_version().select_related("smear__case")


def _claimed_values(now, task_id, worker, lease_expires_at):
    return {
        "status": AnalysisJob.Status.RUNNING,
        "attempts": F("attempts") + 1,
        "started_at": now,
        "finished_at": None,
        "task_id": task_id,
        "worker": worker,
        "reason": "",
        "updated_at": now,
        "lease_expires_at": lease_expires_at,
    }


def claim_queued(job_ids, max_attempts, *, now, task_id, worker, lease_expires_at):
    """Queued → running for this message (attempts + 1), each of ``job_ids`` that is queued with
    attempts left: those jobs with their rows, by id (the others: someone has them, they are
    finished, or gone)."""
    job_ids = sorted(set(job_ids))
    if not job_ids:
        return []
    if not _one_statement():
        claimed = []
        for job_id in job_ids:
            if AnalysisJob.objects.filter(
                pk=job_id, status=AnalysisJob.Status.QUEUED, attempts__lt=max_attempts
            ).update(**_claimed_values(now, task_id, worker, lease_expires_at)):
                claimed.append(_jobs_with_rows().get(pk=job_id))
        return claimed
    return _run(
        _claim_queued_sql(),
        [*_set_params(now, task_id, worker, lease_expires_at), job_ids, AnalysisJob.Status.QUEUED.value, max_attempts],
    )


def claim_waiting(model_version_id, exclude_id, limit, max_attempts, *, now, task_id, worker, lease_expires_at):
    """Up to ``limit`` more queued jobs of the model version (oldest first, not ``exclude_id``),
    claimed for this message; jobs another worker has locked are skipped, never waited for."""
    if limit <= 0:
        return []
    if not _one_statement():
        with transaction.atomic():
            ids = list(
                AnalysisJob.objects.select_for_update(skip_locked=True)
                .filter(status=AnalysisJob.Status.QUEUED, model_version_id=model_version_id, attempts__lt=max_attempts)
                .exclude(pk=exclude_id)
                .order_by("enqueued_at", "pk")
                .values_list("pk", flat=True)[:limit]
            )
            if not ids:
                return []
            AnalysisJob.objects.filter(pk__in=ids, status=AnalysisJob.Status.QUEUED).update(
                **_claimed_values(now, task_id, worker, lease_expires_at)
            )
        return list(_jobs_with_rows().filter(pk__in=ids).order_by("enqueued_at", "pk"))
    queued = AnalysisJob.Status.QUEUED.value
    return _run(
        _claim_waiting_sql(),
        [
            queued,
            model_version_id,
            max_attempts,
            exclude_id,
            limit,
            *_set_params(now, task_id, worker, lease_expires_at),
            queued,
        ],
    )


def job_with_rows(job_id):
    """The job with its smear, case and model version, as it is now; None when it does not exist."""
    if not _one_statement():
        return _jobs_with_rows().filter(pk=job_id).first()
    rows = _run(_select_one_sql(), [job_id])
    return rows[0] if rows else None


# --- SQL (PostgreSQL) -------------------------------------------------------------------------------


def _q(name):
    return connection.ops.quote_name(name)


def _set_params(now, task_id, worker, lease_expires_at):
    return [AnalysisJob.Status.RUNNING.value, now, task_id, worker, now, lease_expires_at]


def _set_sql():
    """The claim's SET clause (parameters: _set_params); the same values as _claimed_values."""
    return ", ".join(
        [
            f"{_q('status')} = %s",
            f"{_q('attempts')} = {_q(AnalysisJob._meta.db_table)}.{_q('attempts')} + 1",
            f"{_q('started_at')} = %s",
            f"{_q('finished_at')} = NULL",
            f"{_q('task_id')} = %s",
            f"{_q('worker')} = %s",
            f"{_q('reason')} = ''",
            f"{_q('updated_at')} = %s",
            f"{_q('lease_expires_at')} = %s",
        ]
    )


def _selected_fields(model):
    return [field for field in model._meta.concrete_fields if field.attname not in _DEFERRED.get(model, ())]


def _joined_select(source):
    """SELECT every column of the job (from ``source``, a table or the WITH clause's ``claimed``)
    and of its smear, case and model version (but its OOD parameters: their digest, last)."""
    columns = ", ".join(
        f"{_q(alias)}.{_q(field.column)}" for model, alias in _TABLES for field in _selected_fields(model)
    )
    job, smear, case, version = (alias for _, alias in _TABLES)
    ood = f"{_q(version)}.{_q('ood')}"
    return (
        f"SELECT {columns}, CASE WHEN {ood} = '{{}}'::jsonb THEN '' ELSE {ood} ->> 'digest' END FROM {source} "
        f"JOIN {_q(Smear._meta.db_table)} {_q(smear)} ON {_q(smear)}.{_q('id')} = {_q(job)}.{_q('smear_id')} "
        f"JOIN {_q(Case._meta.db_table)} {_q(case)} ON {_q(case)}.{_q('id')} = {_q(smear)}.{_q('case_id')} "
        f"JOIN {_q(ModelVersion._meta.db_table)} {_q(version)} "
        f"ON {_q(version)}.{_q('id')} = {_q(job)}.{_q('model_version_id')}"
    )


@cache
def _claim_queued_sql():
    table = _q(AnalysisJob._meta.db_table)
    return (
        f"WITH {_q('claimed')} AS (UPDATE {table} SET {_set_sql()} "
        f"WHERE {_q('id')} = ANY(%s) AND {_q('status')} = %s AND {_q('attempts')} < %s RETURNING {table}.*) "
        f"{_joined_select(_q('claimed'))} ORDER BY {_q('claimed')}.{_q('id')}"
    )


@cache
def _claim_waiting_sql():
    table = _q(AnalysisJob._meta.db_table)
    return (
        f"WITH {_q('picked')} AS (SELECT {_q('id')} FROM {table} "
        f"WHERE {_q('status')} = %s AND {_q('model_version_id')} = %s AND {_q('attempts')} < %s AND {_q('id')} <> %s "
        f"ORDER BY {_q('enqueued_at')}, {_q('id')} LIMIT %s FOR UPDATE SKIP LOCKED), "
        f"{_q('claimed')} AS (UPDATE {table} SET {_set_sql()} FROM {_q('picked')} "
        f"WHERE {table}.{_q('id')} = {_q('picked')}.{_q('id')} AND {table}.{_q('status')} = %s "
        f"RETURNING {table}.*) "
        f"{_joined_select(_q('claimed'))} ORDER BY {_q('claimed')}.{_q('enqueued_at')}, {_q('claimed')}.{_q('id')}"
    )


@cache
def _select_one_sql():
    job = _q("claimed")
    return f"{_joined_select(f'{_q(AnalysisJob._meta.db_table)} {job}')} WHERE {job}.{_q('id')} = %s"


# --- Rows to model instances, as the ORM makes them ------------------------------------------------


def _run(sql, params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return [_job_from_row(row) for row in rows]


@cache
def _layout(vendor):
    """Per table: (model, attnames, converters per column) — the ORM's conversions of column values
    (JSON text to objects, and the database backend's own)."""
    layout = []
    for model, _ in _TABLES:
        fields = _selected_fields(model)
        converters = [
            (
                field.cached_col,
                [*connection.ops.get_db_converters(field.cached_col), *field.get_db_converters(connection)],
            )
            for field in fields
        ]
        layout.append((model, [field.attname for field in fields], converters))
    return layout


def _job_from_row(row):
    instances, start = [], 0
    for model, attnames, converters in _layout(connection.vendor):
        values = list(row[start : start + len(attnames)])
        start += len(attnames)
        for index, (expression, functions) in enumerate(converters):
            for function in functions:
                values[index] = function(values[index], expression, connection)
        instances.append(model.from_db(connection.alias, attnames, values))
    job, smear, case, version = instances
    version.ood_digest = row[start]
    Smear.case.field.set_cached_value(smear, case)
    AnalysisJob.smear.field.set_cached_value(job, smear)
    AnalysisJob.model_version.field.set_cached_value(job, version)
    return job
