"""What runs inside a Celery worker child: the model cache and one analysis job from claim to result.

Process model (prefork): the parent process never imports Keras/TensorFlow (TensorFlow hangs in a
child forked after it started its thread pools). Each child loads a model version the first time a
job needs it and keeps the few most recently used ones (``INFERENCE_MODEL_CACHE_SIZE``, default 2)
until it is recycled (``worker_max_tasks_per_child``). A child of an inference worker loads the
active version when it starts (``warm_up``, from ``worker_process_init``; the pool's start-up
timeout is raised for it), so the first job after a deploy does not pay the load.

Serving runtime (``ml.export``): with the Keras model loaded (sha256-checked), the child
gets its verified serving runtime: the model's TFLite export, cached beside the model file keyed by
its sha256 and used only if it reproduces the Keras model (max abs diff < 1e-4, checked at export
and at every load), else the same graph in TensorFlow. Either way ONE forward pass gives the
probabilities and the Grad-CAM map of the top class. Settings: INFERENCE_RUNTIME (keras, tflite or
auto), INFERENCE_SERVING_CACHE_DIR (a folder for the exports when the model folder is read-only),
INFERENCE_TF_INTRA_OP_THREADS (model threads per child, also TFLite's).

One job (``run_job``; a message of several, ``inference.batching.run_jobs``), all state in the
database:

1. claim (``inference.claims``): ``queued → running`` with a conditional update (attempts + 1)
   returning the job with its smear, case and version (its large training record is another
   table): one statement on PostgreSQL, for all of a message's jobs. Only one message wins;
   duplicates (sweeper re-publish, redelivery) find the job running or done and do nothing. A message that comes back after its
   worker died (acks_late + reject_on_worker_lost) carries the same task id as the claim, so it may
   take the running job over, up to INFERENCE_MAX_ATTEMPTS starts: then the job fails with the
   reason, instead of killing workers forever.
2. the case moves to analysing (no query when it already is); the model is loaded once per child;
   the image is decoded once (``ml.images.decode_image``) and resized for the model and for the
   smear check (``prepare_decoded``: the same arrays as ``prepare_image``); one pass gives the
   probabilities and the Grad-CAM map (a model Grad-CAM cannot explain gets an occlusion map: many
   passes); the PNG overlay is written to storage.
3. atomically (``inference.results``: one statement on PostgreSQL): INSERT the Prediction (unique
   per smear and version; the heatmap's name is in the row) and ``running → done``. A duplicate run
   finds the unique row taken: it keeps the stored one, marks the job done and deletes its own
   heatmap file.
4. the case moves to awaiting review when none of its jobs is pending.
A missing/corrupt model, an unreadable image or a soft time limit fails the job with the reason.
"""

import logging
import os
import time
from pathlib import Path

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from core import log_context
from core.cache import LRUCache
from inference import claims, leases, results, services
from inference.models import AnalysisJob, Prediction
from inference.transient import TRANSIENT_ERRORS, retrying
from training import gates
from training.gates import NOT_A_SMEAR

logger = logging.getLogger(__name__)


class AnalysisError(Exception):
    """A job cannot succeed as things are; the message is the reason shown to people."""


class ModelUnavailable(AnalysisError):
    pass


class ImageUnreadable(AnalysisError):
    pass


# --- Backend set-up (once per process, in the child) -------------------------------------------

_backend_ready = False


def configure_backend():
    """Per-process TensorFlow settings, before the first model: GPU memory growth, thread counts.

    GPU nodes run one worker process per GPU pinned with CUDA_VISIBLE_DEVICES; memory growth keeps
    a child from grabbing the whole card, so a recycled child can start while the old one exits.
    """
    global _backend_ready
    if _backend_ready:
        return
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except (ValueError, RuntimeError) as exc:  # already initialised: too late, but harmless
                logger.warning("Could not enable memory growth on %s: %s", gpu, exc)
        intra, inter = settings.INFERENCE_TF_INTRA_OP_THREADS, settings.INFERENCE_TF_INTER_OP_THREADS
        try:
            if intra:
                tf.config.threading.set_intra_op_parallelism_threads(int(intra))
            if inter:
                tf.config.threading.set_inter_op_parallelism_threads(int(inter))
        except RuntimeError as exc:
            logger.warning("Could not set TensorFlow thread counts: %s", exc)
    _backend_ready = True


# --- Model cache --------------------------------------------------------------------------------


class LoadedModel:
    """A model version ready to serve: the Keras model and its verified serving runtime.

    ``serving`` (ml.export) gives the probabilities and the Grad-CAM map of the top class
    in one forward pass: TFLite when the export reproduces the Keras model (checked on every load),
    else TensorFlow. ``runtime`` says which ("tflite" or "keras").
    """

    def __init__(self, version, model, serving=None):
        self.version_pk = version.pk
        self.sha256 = version.sha256
        self.name = version.name
        self.model = model
        shape = tuple(model.inputs[0].shape)
        self.input_size = int(shape[1] or version.input_size)
        outputs = int(model.outputs[0].shape[-1])
        names = list(version.class_names or [])
        if not names:
            from ml.classes import CLASS_NAMES

            names = list(CLASS_NAMES)
        if len(names) != outputs:
            raise ModelUnavailable(
                f"Model version {version.name} lists {len(names)} classes but its model has {outputs} outputs."
            )
        self.class_names = names
        self.serving = serving
        self.runtime = serving.runtime if serving is not None else "keras"

    def predict(self, batch):
        """Probabilities for a float32 batch (N, size, size, 3)."""
        if self.serving is not None:
            return self.serving.predict(batch)
        return np.asarray(self.model.predict_on_batch(batch), dtype=np.float64)

    def analyse(self, image):
        """(probabilities (K,), cam or None) for one prepared uint8 image: one forward pass."""
        return self.analyse_all(image)[:2]

    def analyse_all(self, image):
        """(probabilities (K,), cam or None, penultimate features (D,) or None): one forward pass
        when the serving runtime returns the features too (a softmax Dense head)."""
        if self.serving is not None:
            return self.serving.analyse_all(image)
        return self.predict(image[None].astype(np.float32))[0], None, None

    def features(self, batch):
        """Penultimate features (N, D) of a float32 batch, for the OOD score (a Keras pass of its own:
        the serving runtime gives probabilities and maps only)."""
        if getattr(self, "_feature_model", None) is None:
            from ml import ood

            self._feature_model = ood.feature_model(self.model)
        features, _ = self._feature_model.predict_on_batch(np.asarray(batch, dtype=np.float32))
        return np.asarray(features, dtype=np.float64)

    def occlusion_heatmap(self, image, class_index):
        """The gradient-free map, for models Grad-CAM cannot explain (many forward passes)."""
        from ml import heatmaps

        return heatmaps.occlusion_map(self.predict, image, class_index)


_cache = LRUCache(lambda: settings.INFERENCE_MODEL_CACHE_SIZE)


def clear_cache():
    _cache.clear()


def _load_keras_model(version):
    """Load the version's model through the registry (sha256-checked, safe_mode)."""
    from training import registry

    try:
        return registry.load_model(version)
    except registry.RegistryError as exc:  # missing file, altered file: the message names the version
        raise ModelUnavailable(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - truncated archive, unknown layer, wrong format...
        raise ModelUnavailable(
            f"The model file of version {version.name!r} cannot be loaded: {type(exc).__name__}: {exc}"
        ) from exc


def _serving_cache_dir(version):
    """Where the version's TFLite export is cached: beside its file (None), or INFERENCE_SERVING_CACHE_DIR;
    the shipped model's folder is part of the checkout, so its export goes under the var folder."""
    if settings.INFERENCE_SERVING_CACHE_DIR:
        return settings.INFERENCE_SERVING_CACHE_DIR
    from training import registry

    shipped = getattr(settings, "SHIPPED_MODEL_DIR", None)
    if shipped and registry.model_path(version).resolve().is_relative_to(Path(shipped).resolve()):
        return str(settings.VAR_DIR / "serving-cache")
    return None


def _threads():
    return settings.INFERENCE_TF_INTRA_OP_THREADS or os.cpu_count() or 1


def _load_serving(version, model):
    """The verified serving runtime of ``model`` (TFLite or Keras; see ml.export)."""
    from ml import export
    from training import registry

    try:
        return export.load_serving(
            model,
            registry.model_path(version),
            version.sha256,
            runtime=settings.INFERENCE_RUNTIME,
            cache_dir=_serving_cache_dir(version),
            num_threads=_threads(),
        )
    except export.ExportError as exc:  # only with TELEDIAG_INFERENCE_RUNTIME=tflite
        raise ModelUnavailable(f"Model version {version.name!r} cannot be served with TFLite: {exc}") from exc


def get_model(version):
    """The loaded model of ``version`` for this process (loaded once, kept in a small LRU cache)."""
    # Same file, same bytes, same classes: the same model, whichever version row points at it.
    key = (version.file_path, version.sha256, tuple(version.class_names or ()))
    cached = _cache.get(key)
    if cached is not None:
        return cached
    configure_backend()
    started = time.perf_counter()
    model = _load_keras_model(version)
    loaded = LoadedModel(version, model)  # checks the classes before any export work
    loaded.serving = _load_serving(version, model)
    loaded.runtime = loaded.serving.runtime
    # Warm-up: builds the compiled functions now, not inside the first timed prediction.
    loaded.analyse(np.zeros((loaded.input_size, loaded.input_size, 3), dtype=np.uint8))
    logger.info(
        "Loaded model version %s in %.1f s (pid %s, runtime %s%s).",
        version.name,
        time.perf_counter() - started,
        os.getpid(),
        loaded.runtime,
        f": {loaded.serving.fallback_reason}" if loaded.serving.fallback_reason else "",
    )
    return _cache.put(key, loaded)


def warm_up():
    """Load the active model version into this process now (worker start), not on its first job.
    Never raises: a missing or broken model fails that model's jobs with the reason, as before."""
    from django.db import close_old_connections

    from training import registry

    started = time.perf_counter()
    try:
        close_old_connections()
        version = registry.get_active_version()
        if version is None:
            logger.info("Warm-up: no active model version yet (pid %s).", os.getpid())
            return None
        get_model(version)
    except Exception as exc:  # noqa: BLE001 - the worker must start anyway
        logger.warning("Warm-up failed (pid %s): %s: %s", os.getpid(), type(exc).__name__, exc)
        return None
    logger.info(
        "Warm-up: model version %s ready in %.1f s (pid %s).", version.name, time.perf_counter() - started, os.getpid()
    )
    return version


# --- One job ------------------------------------------------------------------------------------


def claim(job_id, task_id=""):
    """Take the job for this message, or return None when someone else has it or it is finished."""
    jobs = claim_all([job_id], task_id)
    return jobs[0] if jobs else None


def claim_all(job_ids, task_id=""):
    """Take this message's jobs (one statement for the queued ones); the rest are looked at one by
    one (a redelivered message takes its running jobs over). Returns the jobs taken, by id.

    Each step is retried on its own while the database is briefly away: a retry of the whole would
    find the jobs its first step took running under this message and count a restart for them."""
    now = timezone.now()
    worker = services.worker_name()
    job_ids = sorted({int(job_id) for job_id in job_ids})
    jobs = retrying(
        claims.claim_queued,
        job_ids,
        settings.INFERENCE_MAX_ATTEMPTS,
        now=now,
        task_id=task_id,
        worker=worker,
        lease_expires_at=leases.expiry(now),
    )
    taken = {job.pk for job in jobs}
    for job_id in job_ids:
        if job_id not in taken:
            job = retrying(_claim_not_queued, job_id, task_id, now, worker)
            if job is not None:
                jobs.append(job)
    return sorted(jobs, key=lambda job: job.pk)


def _claim_not_queued(job_id, task_id, now, worker):
    """A job this message could not claim as queued: None, unless the message that claimed it is
    back after its worker died (then it takes the job over, within the attempts allowed)."""
    job = claims.job_with_rows(job_id)
    if job is None:
        logger.warning("Analysis job %s does not exist (deleted?); message dropped.", job_id)
        return None
    if job.status == AnalysisJob.Status.QUEUED:  # attempts used up before this claim
        reason = f"Gave up after {job.attempts} attempts."
        if services.job_fail(job.pk, reason, from_statuses=(AnalysisJob.Status.QUEUED,)):
            services.case_maybe_finished(job.smear.case_id)
        return None
    if job.status == AnalysisJob.Status.RUNNING and job.task_id == task_id:
        # The message that claimed the job is back: its worker died mid-task (the broker redelivers
        # only then; Redis's visibility timeout is longer than the hard time limit).
        if job.attempts >= settings.INFERENCE_MAX_ATTEMPTS:
            reason = (
                f"The analysis stopped its worker process {job.attempts} times (crash or out of memory); "
                f"gave up after {settings.INFERENCE_MAX_ATTEMPTS} attempts."
            )
            if services.job_fail(job.pk, reason, task_id=task_id):
                services.case_maybe_finished(job.smear.case_id)
            return None
        taken = AnalysisJob.objects.filter(
            pk=job_id, status=AnalysisJob.Status.RUNNING, task_id=task_id, attempts=job.attempts
        ).update(
            attempts=F("attempts") + 1,
            started_at=now,
            worker=worker,
            updated_at=now,
            lease_expires_at=leases.expiry(now),
        )
        if taken:
            logger.warning(
                "Analysis job %s restarted after its worker was lost (attempt %s).", job_id, job.attempts + 1
            )
            return claims.job_with_rows(job_id)
    return None  # done, failed, or running under another message: nothing to do


def _read_image(smear):
    try:
        with smear.image.open("rb") as handle:
            return handle.read()
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise ImageUnreadable(f"The image file of this smear cannot be read: {exc}") from exc


def _store_heatmap(png, smear):
    """Write the heatmap PNG to storage before the Prediction row exists; returns its name."""
    from django.core.files.storage import default_storage

    from inference.models import heatmap_path_for

    storage = Prediction._meta.get_field("heatmap").storage or default_storage
    return storage.save(heatmap_path_for(smear), ContentFile(png))


def _delete_stored(name):
    storage = Prediction._meta.get_field("heatmap").storage
    try:
        storage.delete(name)
    except Exception:  # noqa: BLE001 - an orphan file is harmless; a failing cleanup must not fail the job
        logger.warning("Could not delete the unused heatmap %s", name, exc_info=True)


def screen(job, loaded, version, started):
    """Read and prepare a job's image and apply the smear check: ``(image, None)`` for a smear the
    model should see, ``(None, prediction)`` once a not-a-smear result is stored (no subtype, no
    heatmap: the Prediction says why). Raises ImageUnreadable and the storage errors of _read_image."""
    from ml.images import ImageError, decode_image, prepare_decoded

    data = _read_image(job.smear)
    try:
        decoded = decode_image(data)  # once: the model's input and the smear check's are resized from it
        image = prepare_decoded(decoded, loaded.input_size)
    except (ImageError, OSError, ValueError) as exc:
        raise ImageUnreadable(f"The image cannot be decoded: {exc}") from exc
    is_smear, reasons = _smear_verdict(version, data, image, loaded.input_size, decoded)
    if is_smear:
        return image, None
    prediction = _save(
        job,
        started,
        label=NOT_A_SMEAR,
        probabilities={},
        is_smear=False,
        smear_reasons=list(reasons),
        flags=[gates.not_a_smear_flag(reasons)],
    )
    return None, prediction


def analyse(job):
    """Compute and store the prediction of a claimed job; returns the Prediction.

    One forward pass gives the probabilities and the Grad-CAM map (LoadedModel.analyse). Queries:
    the INSERT of the Prediction (heatmap file already written, its name in the row) and the UPDATE
    of the job, atomically (_save). A duplicate run finds the row there and keeps it.
    """
    started = time.perf_counter()
    version = job.model_version
    loaded = get_model(version)
    image, rejected = screen(job, loaded, version, started)
    if rejected is not None:
        return rejected

    t0 = time.perf_counter()
    probs, cam, features = loaded.analyse_all(image)
    inference_ms = (time.perf_counter() - t0) * 1000.0
    if not np.all(np.isfinite(probs)):
        raise AnalysisError("The model returned invalid probabilities (NaN or infinite).")
    class_index = int(np.argmax(probs))
    probabilities = {name: round(float(p), 6) for name, p in zip(loaded.class_names, probs)}
    ood_score, flags = assess_images(version, loaded, image[None], probs[None], [features])[0]

    heatmap_name, method = store_heatmap(job, loaded, image, cam, class_index)
    try:
        prediction = _save(
            job,
            started,
            heatmap_name,
            label=loaded.class_names[class_index],
            probabilities=probabilities,
            heatmap_method=method,
            inference_ms=round(inference_ms),
            runtime=loaded.runtime,
            ood_score=ood_score,
            flags=flags,
        )
    except BaseException:
        if heatmap_name:  # nothing refers to the file: the row was not stored
            _delete_stored(heatmap_name)
        raise
    return prediction


def store_heatmap(job, loaded, image, cam, class_index):
    """(stored file name, method) of the job's heatmap overlay, or ("", "") when it cannot be made or
    stored: the heatmap is an aid, the prediction stands without it. ``cam``: the Grad-CAM map from
    the model's pass, or None for a model Grad-CAM cannot explain (then an occlusion map)."""
    from ml import heatmaps

    try:
        if cam is not None:
            method = "grad-cam"
        else:
            cam, method = loaded.occlusion_heatmap(image, class_index), "occlusion"
        # Stored smears are upright and their size is recorded: no second decode for the overlay.
        png = heatmaps.overlay_png(cam, loaded.input_size, (job.smear.width, job.smear.height))
    except SoftTimeLimitExceeded:
        raise
    except Exception:  # noqa: BLE001
        logger.exception("Heatmap failed for job %s", job.pk)
        return "", ""
    try:
        return _store_heatmap(png, job.smear), method
    except OSError:  # disk full
        logger.warning("Could not store the heatmap of job %s; stored without one", job.pk, exc_info=True)
        return "", ""


def _smear_verdict(version, data, image, size, decoded=None):
    """(is_smear, reasons) from the version's stored smear check (training.gates, the same gate as
    ``manage.py diagnose``) on the image prepared at the check's size (224 px; reused when the
    model's input is that size, else resized from ``decoded``, the already decoded image). No
    check: everything passes; a failing check lets the image through."""
    return gates.smear_verdict_of(version, data, image, size, reraise=(SoftTimeLimitExceeded,), decoded=decoded)


def assess_images(version, loaded, images, probabilities, features=None):
    """[(ood_score, flags)] per image (training.gates.assess: OOD and low confidence, the same gate
    as ``manage.py diagnose``). ``images``: prepared uint8 (N, S, S, 3); ``probabilities``: (N, K);
    ``features``: their penultimate features when the forward pass gave them (else a Keras pass)."""
    if features is not None and all(f is not None for f in features):
        return [gates.assess(version, p, f, reraise=(SoftTimeLimitExceeded,)) for p, f in zip(probabilities, features)]
    features = [None] * len(images)
    if gates.needs_features(version):
        try:
            features = loaded.features(np.asarray(images, dtype=np.float32))
        except SoftTimeLimitExceeded:
            raise
        except Exception:  # noqa: BLE001 - the score is an aid; the prediction stands without it
            logger.exception("Penultimate features failed for model version %s; no OOD score", version.pk)
    return [gates.assess(version, p, f, reraise=(SoftTimeLimitExceeded,)) for p, f in zip(probabilities, features)]


def _prediction(job, started, heatmap_name="", **fields):
    """The job's Prediction (``fields``), not yet saved."""
    queue_wait_ms = max(0, int((job.started_at - job.enqueued_at).total_seconds() * 1000)) if job.started_at else None
    return Prediction(
        smear=job.smear,
        model_version=job.model_version,
        job=job,
        heatmap=heatmap_name,
        queue_wait_ms=queue_wait_ms,
        worker=services.worker_name(),
        total_ms=round((time.perf_counter() - started) * 1000.0),
        **fields,
    )


def _save(job, started, heatmap_name="", **fields):
    """The job's Prediction (``fields``) and running → done in one statement (inference.results). A
    duplicate run finds the row stored by the other: that one counts, and this run's heatmap file is
    deleted."""
    prediction = _prediction(job, started, heatmap_name, **fields)
    now = timezone.now()
    try:
        results.store([(job, prediction)], now)
    except IntegrityError:
        prediction = _keep_stored(job, now, heatmap_name)
    return prediction


def _keep_stored(job, now, heatmap_name):
    """A duplicate run: the stored Prediction counts, the job is done, this run's heatmap is deleted."""
    done = {"status": AnalysisJob.Status.DONE, "finished_at": now, "reason": "", "updated_at": now}
    with transaction.atomic():
        prediction = Prediction.objects.get(smear=job.smear, model_version=job.model_version)
        AnalysisJob.objects.filter(pk=job.pk, status=AnalysisJob.Status.RUNNING, task_id=job.task_id).update(**done)
    if heatmap_name:
        _delete_stored(heatmap_name)
    return prediction


def run_job(job_id, task_id=""):
    """The body of the ``inference.analyse_smear`` task. Returns "done", "failed" or "skipped"."""
    # Every step retries while the database is briefly away (inference.transient); the claim's own
    # steps do (claim_all): retrying it whole would count a restart for a job its first step took.
    job = claim(job_id, task_id or "")
    if job is None:
        return "skipped"
    case_id = job.smear.case_id
    log_context.bind_case(case_id)
    retrying(services.case_started, case_id, status=job.smear.case.status)
    outcome = "failed"
    try:
        with leases.held(job):
            retrying(analyse, job)
        outcome = "done"
    except SoftTimeLimitExceeded:
        limit = getattr(settings, "CELERY_TASK_SOFT_TIME_LIMIT", None)
        retrying(
            services.job_fail,
            job.pk,
            f"The analysis took longer than the {limit} s limit and was stopped.",
            task_id=job.task_id,
        )
    except AnalysisError as exc:
        retrying(services.job_fail, job.pk, str(exc), task_id=job.task_id)
    except TRANSIENT_ERRORS:
        raise  # the database stayed away: never "failed" for that; the lease hands the job back
    except Exception as exc:  # noqa: BLE001 - say what happened; a person can retry
        logger.exception("Analysis job %s failed", job.pk)
        retrying(services.job_fail, job.pk, f"Unexpected error: {type(exc).__name__}: {exc}", task_id=job.task_id)
    retrying(services.case_maybe_finished, case_id)
    return outcome
