"""Reading the accounts a lab admin manages. The portal and the API both look users up here.

A lab admin (of a referring site, a reading laboratory, or both) sees the users of their own
organisation only, superusers excluded. Everyone else manages no one: any other user is a 404,
so the existence of another organisation's accounts is never revealed.
"""

from django.db.models import Q
from django.http import Http404

from accounts.models import User
from core.permissions import administers_organisation


def users_managed_by(admin, *, search="", role=""):
    """The users ``admin`` may see and change (unordered: callers order for their page).

    ``search`` keeps the users whose username, names or email contain every word of it;
    ``role`` (a ``User.Role`` value) keeps that role only. Empty values filter nothing.
    """
    if not administers_organisation(admin):
        return User.objects.none()
    users = User.objects.filter(organisation_id=admin.organisation_id, is_superuser=False)
    for term in (search or "").split():
        users = users.filter(
            Q(username__icontains=term)
            | Q(first_name__icontains=term)
            | Q(last_name__icontains=term)
            | Q(email__icontains=term)
        )
    if role:
        users = users.filter(role=role)
    return users


def get_managed_user(admin, pk):
    """One user ``admin`` manages; Http404 for anyone else (another organisation's, a superuser...)."""
    try:
        return users_managed_by(admin).get(pk=pk)
    except (User.DoesNotExist, ValueError, TypeError):
        raise Http404("No such user.") from None
