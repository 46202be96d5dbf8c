"""What the AI analysis tells other apps (notifications), so that inference never imports them."""

from django.dispatch import Signal

# An analysis job became failed: job_id, case_id, reason. Sent once per job that fails (the move
# to failed is conditional), by whichever process failed it (a worker, the sweeper).
analysis_failed = Signal()
