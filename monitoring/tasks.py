"""Celery beat's periodic check of every site's recent results (alerts also follow each signature)."""

from celery import shared_task


@shared_task(name="monitoring.evaluate_alerts", ignore_result=True)
def evaluate_alerts():
    from monitoring.alerts import evaluate_all

    return evaluate_all()
