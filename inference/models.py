"""AI analysis state. The database is the source of truth (Celery has no result backend).

One ``AnalysisJob`` per (smear, model version): its status says where the work is; the worker
writes one ``Prediction`` per (smear, model version) when it succeeds. Both pairs are unique, so a
redelivered or duplicated task message can never produce a second result.
"""

import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class AnalysisJobQuerySet(models.QuerySet):
    def with_version(self):
        """Jobs with their model version in the same query (its training record is a separate table)."""
        return self.select_related("model_version")


class AnalysisJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"

    PENDING_STATUSES = (Status.QUEUED, Status.RUNNING)
    FINISHED_STATUSES = (Status.DONE, Status.FAILED)

    smear = models.ForeignKey("cases.Smear", on_delete=models.PROTECT, related_name="analysis_jobs")
    model_version = models.ForeignKey("training.ModelVersion", on_delete=models.PROTECT, related_name="analysis_jobs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Starts of this job, counted when a worker claims it.")
    reason = models.TextField(blank=True, help_text="Why the job failed, in words a person can act on.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    enqueued_at = models.DateTimeField(
        default=timezone.now, help_text="When this job (last) entered the queue: submission, retry or re-run."
    )
    published_at = models.DateTimeField(
        null=True, blank=True, help_text="Last time a message for this job was handed to the broker."
    )
    publish_count = models.PositiveIntegerField(default=0)
    last_enqueue_error = models.TextField(
        blank=True, help_text="Error of the last failed publish; empty once one works."
    )
    published_message_id = models.CharField(
        max_length=64,
        blank=True,
        help_text="Celery id of the last message handed to the broker for this job (a case's smears share one).",
    )
    task_id = models.CharField(max_length=64, blank=True, help_text="Celery id of the message that claimed the job.")
    worker = models.CharField(max_length=200, blank=True, help_text="Host:pid of the process that last claimed it.")
    started_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="While running: the worker renews this; once past, the sweeper queues the job again.",
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = AnalysisJobQuerySet.as_manager()

    class Meta:
        ordering = ["smear_id", "-enqueued_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["smear", "model_version"], name="one_job_per_smear_and_model_version"),
        ]
        indexes = [
            models.Index(fields=["status", "enqueued_at"]),
            # The job lists: newest first (API), failed ones by when they failed (portal).
            models.Index(fields=["-enqueued_at", "-id"], name="job_newest"),
            models.Index(fields=["-finished_at", "-id"], condition=models.Q(status="failed"), name="job_failed_newest"),
        ]

    def __str__(self):
        return f"Analysis of smear {self.smear_id} with model {self.model_version_id} ({self.status})"

    @property
    def is_pending(self):
        return self.status in self.PENDING_STATUSES


def heatmap_path_for(smear):
    """Storage name of a new heatmap of ``smear`` (an internal name, never the upload's)."""
    return f"heatmaps/{smear.case.site_id}/{smear.case_id}/{uuid.uuid4().hex}.png"


def heatmap_upload_to(prediction, filename):
    return heatmap_path_for(prediction.smear)


class Prediction(models.Model):
    smear = models.ForeignKey("cases.Smear", on_delete=models.PROTECT, related_name="predictions")
    model_version = models.ForeignKey("training.ModelVersion", on_delete=models.PROTECT, related_name="predictions")
    job = models.ForeignKey(AnalysisJob, on_delete=models.SET_NULL, null=True, blank=True, related_name="predictions")
    label = models.CharField(max_length=40, help_text="Class with the highest probability.")
    probabilities = models.JSONField(default=dict, help_text="Class name → probability (sums to 1).")
    heatmap = models.FileField(upload_to=heatmap_upload_to, max_length=255, blank=True)
    heatmap_method = models.CharField(max_length=40, blank=True, help_text="grad-cam, occlusion, or empty.")
    queue_wait_ms = models.PositiveIntegerField(null=True, blank=True, help_text="From enqueued to started.")
    inference_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Model forward pass only.")
    total_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Read, prepare, predict and heatmap.")
    worker = models.CharField(max_length=200, blank=True, help_text="Host and process that computed it.")
    runtime = models.CharField(
        max_length=20,
        blank=True,
        help_text="What ran the model: tflite (verified export of the same model) or keras.",
    )
    is_smear = models.BooleanField(
        default=True,
        db_default=True,
        help_text="False: the model version's smear check says this is not a stained blood smear; no subtype "
        "was given (label not_a_smear) and the image is left out of the case result.",
    )
    smear_reasons = models.JSONField(
        default=list,
        blank=True,
        db_default=[],
        help_text="Why the image is not taken for a smear.",
    )
    ood_score = models.FloatField(
        null=True,
        blank=True,
        help_text="Out-of-distribution score of the image against the model version's training split "
        "(higher is further away); empty when the version has no fitted OOD model.",
    )
    flags = models.JSONField(
        default=list,
        blank=True,
        db_default=[],
        help_text="Why the pathologist should look twice (outside validated conditions, low confidence); "
        "empty when the result is within what the model was validated on.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["smear_id", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["smear", "model_version"], name="one_prediction_per_smear_and_model_version"
            ),
        ]

    def __str__(self):
        return f"Prediction {self.label} for smear {self.smear_id} (model {self.model_version_id})"

    @property
    def top_probability(self):
        return max(self.probabilities.values()) if self.probabilities else None
