"""Signals of the model registry, for other apps to record (the audit trail) without training
depending on them."""
from django.dispatch import Signal

# Sent after a version became the one active model: version (ModelVersion), by (a user, or None
# for a command run by an operator).
model_promoted = Signal()
