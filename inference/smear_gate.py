"""Is an uploaded image a stained blood smear at all? Kept for its callers: the gate lives in
``training.gates`` (one implementation for the worker and ``manage.py diagnose``)."""

from training.gates import NOT_A_SMEAR, check_for, clear_cache, reasons_text, smear_verdict

__all__ = ["NOT_A_SMEAR", "check_for", "clear_cache", "reasons_text", "smear_verdict"]
