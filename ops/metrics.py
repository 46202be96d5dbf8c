"""Celery and analysis metrics for Prometheus, read at scrape time from where the truth is.

The database is the record of every analysis (no result backend), so the counts and timings come
from it: they are the same whichever web process is scraped and however many worker nodes (CPU or
GPU) there are, and need no port on any worker. Queue lengths come from the broker. One scrape
reads the predictions once (a few hundred ms per 100 000 predictions); scrape every 30-60 s.
"""

import logging

from django.conf import settings
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

logger = logging.getLogger(__name__)
QUEUES = ("inference", "training", "default")
# Seconds; inference on a CPU takes 0.02-2 s per image, a job a few seconds, waits up to minutes.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def queue_lengths():
    """{queue: messages waiting}; raises when the broker is unreachable."""
    from celery import current_app as app  # the project's app (telediag.celery), set as current

    lengths = {}
    with app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=1, timeout=settings.CELERY_BROKER_CONNECTION_TIMEOUT)
        channel = connection.default_channel
        for queue in QUEUES:
            try:
                lengths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except Exception:  # noqa: BLE001 - a queue nobody declared yet holds nothing
                lengths[queue] = 0
    return lengths


class _Histogram:
    def __init__(self):
        self.counts = [0] * len(BUCKETS)
        self.total = 0
        self.sum = 0.0

    def observe(self, seconds):
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1
        self.total += 1
        self.sum += seconds

    def buckets(self):
        return [(str(bound), count) for bound, count in zip(BUCKETS, self.counts)] + [("+Inf", self.total)]


def prediction_flag(is_smear, probabilities, threshold):
    """What a pathologist is warned of: not_a_smear, low_confidence (top probability below the
    attention threshold) or none."""
    if not is_smear:
        return "not_a_smear"
    top = max(probabilities.values()) if probabilities else None
    return "low_confidence" if top is not None and top < threshold else "none"


class TelediagCollector:
    """Analysis metrics, per model version (its name)."""

    def collect(self):
        from inference.models import AnalysisJob, Prediction

        broker_up = GaugeMetricFamily("telediag_broker_up", "1 when the Celery broker answered this scrape.")
        queue_length = GaugeMetricFamily(
            "telediag_queue_length", "Messages waiting in a Celery queue.", labels=["queue"]
        )
        try:
            for queue, length in queue_lengths().items():
                queue_length.add_metric([queue], length)
            broker_up.add_metric([], 1)
        except Exception as exc:  # noqa: BLE001 - the scrape still reports the rest
            logger.warning("Broker unreachable for metrics: %s", type(exc).__name__)
            broker_up.add_metric([], 0)
        yield broker_up
        yield queue_length

        jobs = GaugeMetricFamily(
            "telediag_analysis_jobs",
            "Analysis jobs by status (failed: waiting for a retry or given up).",
            labels=["status", "model_version"],
        )
        rows = AnalysisJob.objects.values_list("status", "model_version__name")
        counts = {}
        for status, version in rows.iterator(chunk_size=5000):
            counts[(status, version)] = counts.get((status, version), 0) + 1
        for (status, version), count in sorted(counts.items()):
            jobs.add_metric([status, version], count)
        yield jobs

        predictions = CounterMetricFamily(
            "telediag_predictions",
            "Stored predictions by label and flag.",
            labels=["model_version", "label", "flag"],
        )
        names = ("inference", "task", "queue_wait")
        docs = {
            "inference": "The model's forward pass (probabilities and heatmap) per image.",
            "task": "A worker's whole analysis of one image: read, prepare, predict, heatmap, store.",
            "queue_wait": "From the job's publication to a worker starting it.",
        }
        histograms = {name: {} for name in names}
        tallies = {}
        threshold = settings.ATTENTION_THRESHOLD
        rows = Prediction.objects.values_list(
            "model_version__name",
            "label",
            "is_smear",
            "probabilities",
            "inference_ms",
            "total_ms",
            "queue_wait_ms",
        )
        for version, label, is_smear, probabilities, inference_ms, total_ms, wait_ms in rows.iterator(chunk_size=2000):
            key = (version, label, prediction_flag(is_smear, probabilities or {}, threshold))
            tallies[key] = tallies.get(key, 0) + 1
            for name, value in zip(names, (inference_ms, total_ms, wait_ms)):
                if value is not None:
                    histograms[name].setdefault(version, _Histogram()).observe(value / 1000.0)
        for key, count in sorted(tallies.items()):
            predictions.add_metric(list(key), count)
        yield predictions
        for name in names:
            family = HistogramMetricFamily(f"telediag_{name}_seconds", docs[name], labels=["model_version"])
            for version, histogram in sorted(histograms[name].items()):
                family.add_metric([version], histogram.buckets(), histogram.sum)
            yield family

        active = GaugeMetricFamily("telediag_model_active", "1 for the active model version.", labels=["model_version"])
        from training.models import ModelVersion

        for name in ModelVersion.objects.filter(is_active=True).values_list("name", flat=True):
            active.add_metric([name], 1)
        yield active
