"""Several smears in one task: a case's smears (one message), and micro-batching.

A message of several jobs (``inference.analyse_smears``: a case's smears) is claimed in one
statement; the case moves to analysing once, each image is screened, classified and its result
stored (one INSERT for all), and the case moves on once.

With ``TELEDIAG_INFERENCE_BATCH_MAX`` above 1 (GPU nodes: 8–32), a worker that takes a message
also claims up to that many, less the message's own jobs, other queued jobs of the same model
version, oldest first (``SELECT … FOR UPDATE SKIP LOCKED``: two workers never take the same job,
and none waits for the other), and runs their images through the model together: one forward pass
of N images gives the N probability vectors and the N Grad-CAM maps of their top classes. When the
queue is empty the batch is the message's jobs. Without it (CPU nodes) the images go through the
one-image runtime one after the other.

The jobs' own messages, when they arrive, find their job running or done and do nothing
(``inference.worker.claim_all`` is idempotent). If the worker dies mid-batch, the message that
claimed the batch comes back and takes its own jobs over; the others are recovered by the sweeper
once their lease expires.

The batched graph is the serving graph of ``ml.export`` with a free batch dimension, in
TensorFlow (a GPU when the node has one). It is checked once per loaded model against the verified
one-image runtime (probabilities within 1e-4 on smear-like probes); a model that fails the check, or
whose Grad-CAM is not available, is served one image at a time as before.
"""

import logging
import time
from contextlib import ExitStack

import numpy as np
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from core import log_context
from inference import claims, leases, results, services, worker
from inference.transient import TRANSIENT_ERRORS, retrying

logger = logging.getLogger(__name__)

TOLERANCE = 1e-4


def batch_max():
    """Most images per model call (INFERENCE_BATCH_MAX; 1: no batching)."""
    return settings.INFERENCE_BATCH_MAX


# --- Claiming waiting jobs ------------------------------------------------------------------------


def claim_waiting(job, limit, task_id=""):
    """Claim up to ``limit`` more queued jobs of ``job``'s model version (oldest first) for this message."""
    now = timezone.now()
    return claims.claim_waiting(
        job.model_version_id,
        job.pk,
        limit,
        settings.INFERENCE_MAX_ATTEMPTS,
        now=now,
        task_id=task_id,
        worker=services.worker_name(),
        lease_expires_at=leases.expiry(now),
    )


# --- The batched graph ------------------------------------------------------------------------------


class BatchedGraph:
    """(probabilities (N, K), cams (N, h, w)) of a float32 batch (N, S, S, 3) in one forward pass."""

    def __init__(self, model):
        import tensorflow as tf

        from ml import export

        feature_layer = export.find_feature_layer(model)
        if feature_layer is None:
            raise export.GradCamUnavailable("The model has no spatial feature map to explain.")
        head = model.layers[-1]
        use_logits = export._head_uses_logits(head)
        explained = export.grad_model(model, feature_layer, head, use_logits)
        kernel, bias = (head.kernel, head.bias) if use_logits else (None, None)
        size = int(model.inputs[0].shape[1])
        self.input_size = size

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], reduce_retracing=True)
        def serve(images):
            with tf.GradientTape() as tape:
                features, last = explained(images, training=False)
                tape.watch(features)
                if use_logits:
                    scores = tf.matmul(last, kernel) + (bias if bias is not None else 0.0)
                    probabilities = tf.nn.softmax(scores, axis=-1)
                else:
                    scores = probabilities = last
                top = tf.argmax(scores, axis=-1, output_type=tf.int32)
                # Each image's top score depends on that image only: the gradient of their sum gives
                # every image's own map in one backward pass.
                score = tf.reduce_sum(tf.gather(scores, top, axis=1, batch_dims=1))
            grads = tape.gradient(score, features)
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            return probabilities, tf.nn.relu(tf.reduce_sum(features * weights, axis=-1))

        self._serve = serve

    def __call__(self, images):
        import tensorflow as tf

        probabilities, cams = self._serve(tf.convert_to_tensor(np.asarray(images, dtype=np.float32)))
        return probabilities.numpy().astype(np.float64), cams.numpy()


def batched_graph(loaded):
    """The checked batched graph of a loaded model, or None (then images go one at a time)."""
    if hasattr(loaded, "_batched_graph"):
        return loaded._batched_graph
    graph = None
    try:
        from ml.export import smear_like_images

        graph = BatchedGraph(loaded.model)
        probes = np.asarray(smear_like_images(loaded.input_size, count=4), dtype=np.float32)
        together, _ = graph(probes)
        alone = np.stack([loaded.analyse(image.astype(np.uint8))[0] for image in probes])
        difference = float(np.max(np.abs(together - alone)))
        if difference > TOLERANCE:
            logger.warning(
                "Batched graph of %s differs from its runtime by %.2g: one image per call.", loaded.name, difference
            )
            graph = None
    except SoftTimeLimitExceeded:
        raise
    except Exception as exc:  # noqa: BLE001 - batching is an optimisation; serving goes on without it
        logger.warning("No batched graph for %s (%s: %s): one image per call.", loaded.name, type(exc).__name__, exc)
        graph = None
    loaded._batched_graph = graph
    return graph


# --- Running a batch -------------------------------------------------------------------------------


def run_jobs(job_ids, task_id=""):
    """The task body for a message of several jobs (a case's smears), or of one with micro-batching:
    this message's jobs and, with BATCH_MAX above their number, waiting ones of the same model.

    Returns {job id: "done", "failed" or "skipped"} for this message's jobs."""
    task_id = task_id or ""
    jobs = worker.claim_all(job_ids, task_id)  # its steps retry on their own
    if jobs:
        jobs += retrying(claim_waiting, jobs[0], batch_max() - len(jobs), task_id)
    cases = {j.smear.case_id: j.smear.case.status for j in jobs}  # as the claim read them
    log_context.bind_case(next(iter(cases)) if len(cases) == 1 else None)  # a case's message: its id
    for case_id, status in cases.items():
        retrying(services.case_started, case_id, status=status)
    outcomes = {j.pk: "failed" for j in jobs}
    try:
        with ExitStack() as held:  # every job's lease renewed while the batch runs
            for j in jobs:
                held.enter_context(leases.held(j))
            for same_model in _by_model_version(jobs):
                # Safe to run again after a database blip: a result is stored once per smear.
                outcomes.update(retrying(_analyse_batch, same_model))
    except TRANSIENT_ERRORS:
        raise  # the database went away: never "failed" for that; the leases hand the jobs back
    except SoftTimeLimitExceeded:
        limit = getattr(settings, "CELERY_TASK_SOFT_TIME_LIMIT", None)
        for j in jobs:
            if outcomes.get(j.pk) != "done":
                services.job_fail(
                    j.pk, f"The analysis took longer than the {limit} s limit and was stopped.", task_id=j.task_id
                )
    except Exception as exc:  # noqa: BLE001 - say what happened; a person can retry
        logger.exception("Analysis batch of jobs %s failed", [j.pk for j in jobs])
        for j in jobs:
            if outcomes.get(j.pk) != "done":
                services.job_fail(j.pk, f"Unexpected error: {type(exc).__name__}: {exc}", task_id=j.task_id)
    for case_id in sorted(cases):
        retrying(services.case_maybe_finished, case_id)
    return {job_id: outcomes.get(job_id, "skipped") for job_id in job_ids}


def _by_model_version(jobs):
    """The jobs in groups of one model version (a message's jobs normally share theirs)."""
    groups = {}
    for job in jobs:
        groups.setdefault(job.model_version_id, []).append(job)
    return list(groups.values())


def _analyse_batch(jobs):
    """Prepare every image, one model call for the smears, then store each result. {job id: outcome}."""
    started = time.perf_counter()
    outcomes, ready = {}, []
    version = jobs[0].model_version
    loaded = worker.get_model(version)
    for job in jobs:
        try:
            image, rejected = worker.screen(job, loaded, version, started)
            if rejected is not None:
                outcomes[job.pk] = "done"
            else:
                ready.append((job, image))
        except worker.AnalysisError as exc:
            services.job_fail(job.pk, str(exc), task_id=job.task_id)
            outcomes[job.pk] = "failed"
    if not ready:
        return outcomes

    # One model call for the batch where batching pays (BATCH_MAX > 1: a GPU); on CPU nodes the
    # verified one-image runtime is faster, so a case's smears go through it one after the other.
    graph = batched_graph(loaded) if len(ready) > 1 and batch_max() > 1 else None
    t0 = time.perf_counter()
    if graph is not None:
        # At most BATCH_MAX images per call (a case's message may carry more), stored together below.
        calls = [
            graph(np.stack([image for _, image in ready[start : start + batch_max()]]).astype(np.float32))
            for start in range(0, len(ready), batch_max())
        ]
        probabilities = np.concatenate([p for p, _ in calls])
        cams = np.concatenate([c for _, c in calls])
        features = None  # the OOD score's features: a pass of their own (cheap where batching pays, a GPU)
    else:
        analysed = [loaded.analyse_all(image) for _, image in ready]
        probabilities = np.stack([p for p, _, _ in analysed])
        cams = [c for _, c, _ in analysed]
        features = [f for _, _, f in analysed]
    inference_ms = (time.perf_counter() - t0) * 1000.0 / len(ready)  # each image's share of the call
    images = np.stack([image for _, image in ready])
    assessed = worker.assess_images(version, loaded, images, probabilities, features)

    entries = []  # (job, unsaved Prediction, heatmap file name): stored together below
    try:
        try:
            for (job, image), probs, cam, (ood_score, flags) in zip(ready, probabilities, cams, assessed):
                if not np.all(np.isfinite(probs)):
                    services.job_fail(
                        job.pk, "The model returned invalid probabilities (NaN or infinite).", task_id=job.task_id
                    )
                    outcomes[job.pk] = "failed"
                    continue
                class_index = int(np.argmax(probs))
                probability_map = {name: round(float(p), 6) for name, p in zip(loaded.class_names, probs)}
                heatmap_name, method = worker.store_heatmap(job, loaded, image, cam, class_index)
                prediction = worker._prediction(
                    job,
                    started,
                    heatmap_name,
                    label=loaded.class_names[class_index],
                    probabilities=probability_map,
                    heatmap_method=method,
                    inference_ms=round(inference_ms),
                    runtime=loaded.runtime,
                    ood_score=ood_score,
                    flags=flags,
                )
                entries.append((job, prediction, heatmap_name))
        finally:  # also when stopped part-way (a time limit): the results made so far count
            _store(entries)
    except BaseException:
        for _, prediction, heatmap_name in entries:
            if heatmap_name and prediction.pk is None:  # nothing refers to the file: its row was not stored
                worker._delete_stored(heatmap_name)
        raise
    outcomes.update((job.pk, "done") for job, _, _ in entries)
    return outcomes


def _store(entries):
    """Every (job, Prediction, heatmap name) in one statement (inference.results); when a smear already
    has its Prediction (a duplicate run), each on its own, so that the others are still stored."""
    if not entries:
        return
    now = timezone.now()
    try:
        results.store([(job, prediction) for job, prediction, _ in entries], now)
    except IntegrityError:
        for job, prediction, heatmap_name in entries:
            try:
                results.store([(job, prediction)], now)
            except IntegrityError:
                worker._keep_stored(job, now, heatmap_name)
