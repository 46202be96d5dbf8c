"""What the clinical record tells other apps, so that cases never imports them.

All are sent inside the transaction that makes the change, so a receiver's writes commit or roll
back with it; receivers that talk to the outside world (a broker, e-mail) do so on commit.
"""

from django.dispatch import Signal

# A case and its smears were created: case, smears, model_version (the one asked for, or None).
case_submitted = Signal()

# A pathologist signed a case: case, review (the signature just created).
case_signed = Signal()

# A pathologist amended a signed case: case, review (the amendment just created), previous (the
# review it supersedes).
case_amended = Signal()
