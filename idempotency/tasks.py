"""The idempotency app's one periodic task (Celery beat, daily)."""

from celery import shared_task

from idempotency import services


@shared_task(name="idempotency.purge_expired_keys")
def purge_expired_keys():
    return services.purge_expired()
