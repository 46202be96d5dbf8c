"""Every change a lab admin makes to an account goes through these functions (portal and API alike).

The rules live here, once:

- only a lab admin manages users, and only those of their own organisation (never a superuser);
- a role must suit the organisation's kind: no clinicians in a pure reading laboratory, no
  pathologists in a pure referring site (every organisation may have lab admins);
- usernames are unique whatever their case, and follow Django's username rules;
- passwords pass the configured password validators (AUTH_PASSWORD_VALIDATORS);
- an admin cannot change their own role or deactivate themselves (no lock-out by mistake);
- deactivating an account revokes its API tokens; accounts are never deleted;
- every change is recorded in the audit trail.

A refused request raises ``NotAllowed`` (the caller may not do this at all: 403) or ``DomainError``
whose ``details`` name every offending field (``username``, ``role``, ``password``, ``is_active``...),
so a form or an API answer can show all the problems at once.
"""

import copy

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from rest_framework.authtoken.models import Token

from accounts.models import Organisation, User
from audit.models import AuditEvent
from audit.services import audit
from core.errors import DomainError, NotAllowed
from core.permissions import administers_organisation, require_role
from security.passwords import password_set_by_admin

# Which roles make sense in which kind of organisation: a pathologist reads a laboratory's cases,
# a clinician submits a site's cases; every organisation can have administrators.
ROLES_BY_KIND = {
    Organisation.Kind.REFERRING: {User.Role.CLINICIAN, User.Role.LAB_ADMIN},
    Organisation.Kind.READING: {User.Role.PATHOLOGIST, User.Role.LAB_ADMIN},
    Organisation.Kind.BOTH: {User.Role.CLINICIAN, User.Role.PATHOLOGIST, User.Role.LAB_ADMIN},
}

NOT_A_LAB_ADMIN = "Only lab admins manage users."
OWN_ROLE = "You cannot change your own role."
OWN_DEACTIVATION = "You cannot deactivate your own account."


def allowed_roles(organisation):
    """The role values a member of ``organisation`` may have, in ``User.Role`` order."""
    allowed = ROLES_BY_KIND.get(organisation.kind, set())
    return [role for role in User.Role.values if role in allowed]


class _Problems:
    """Every rule one request breaks, so that a single answer names them all."""

    def __init__(self):
        self.messages = []
        self.details = {}

    def add(self, field, details, message):
        if isinstance(details, str):
            details = [details]
        self.details.setdefault(field, []).extend(details)
        if message not in self.messages:
            self.messages.append(message)

    def raise_if_any(self):
        if self.details:
            raise DomainError(" ".join(self.messages), details=self.details)


def _require_managed(admin, user):
    if user.organisation_id != admin.organisation_id or user.is_superuser:
        raise NotAllowed("You can only manage users of your own organisation.")


def _check_role(problems, organisation, role):
    allowed = allowed_roles(organisation)
    if role in allowed:
        return
    choose = f"Choose one of: {', '.join(allowed)}."
    if role not in User.Role.values:
        problems.add("role", choose, f"{role!r} is not a role.")
    else:
        label = User.Role(role).label.lower()
        kind = organisation.get_kind_display().lower()
        problems.add("role", choose, f"A {label} cannot belong to {organisation.name} ({kind}).")


def _clean_username(problems, username):
    username = (username or "").strip()
    if not username:
        problems.add("username", "This field is required.", "Choose a username.")
        return username
    try:
        User._meta.get_field("username").run_validators(username)
    except DjangoValidationError as exc:
        problems.add("username", exc.messages, "The username is not valid.")
        return username
    if User.objects.filter(username__iexact=username).exists():
        problems.add("username", "Already taken.", f"The username {username} is taken.")
    return username


def _check_password(problems, password, user):
    """``user`` carries the names the password must not resemble (it need not be saved)."""
    if not password:
        problems.add("password", "Choose a password.", "A password is required.")
        return
    try:
        password_validation.validate_password(password, user=user)
    except DjangoValidationError as exc:
        problems.add("password", exc.messages, "The password is not strong enough.")


def _clean_text(value):
    return (value or "").strip()


def _clean_email(value):
    return User.objects.normalize_email(_clean_text(value))


def user_create(*, admin, username, password, role, first_name="", last_name="", email="", request=None):
    """Create an account in ``admin``'s own organisation (never staff, never superuser)."""
    require_role(administers_organisation(admin), NOT_A_LAB_ADMIN)
    organisation = admin.organisation
    problems = _Problems()
    username = _clean_username(problems, username)
    _check_role(problems, organisation, role)
    user = User(
        username=username,
        first_name=_clean_text(first_name),
        last_name=_clean_text(last_name),
        email=_clean_email(email),
        organisation=organisation,
        role=role,
        is_staff=False,
        is_superuser=False,
    )
    _check_password(problems, password, user)
    problems.raise_if_any()

    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
            password_set_by_admin(user, admin=admin, request=request, new_account=True)  # a temporary password
            audit(
                AuditEvent.Action.CREATED,
                actor=admin,
                request=request,
                object="user",
                user_id=user.pk,
                username=user.username,
                role=role,
            )
    except IntegrityError:  # created by someone else meanwhile
        raise DomainError(f"The username {username} is taken.", details={"username": ["Already taken."]}) from None
    return user


def user_update(
    *,
    admin,
    user,
    first_name=None,
    last_name=None,
    email=None,
    role=None,
    is_active=None,
    password=None,
    request=None,
):
    """Change a managed user's names, email, role or whether they may sign in, and/or set a new password.

    ``None`` leaves a value as it is. Nothing is saved unless every change is allowed. The audit
    event lists each changed field as ``[before, after]``; a new password shows as ``password_reset``.
    """
    require_role(administers_organisation(admin), NOT_A_LAB_ADMIN)
    _require_managed(admin, user)

    wanted = {}
    if first_name is not None:
        wanted["first_name"] = _clean_text(first_name)
    if last_name is not None:
        wanted["last_name"] = _clean_text(last_name)
    if email is not None:
        wanted["email"] = _clean_email(email)
    if role is not None:
        wanted["role"] = role
    if is_active is not None:
        wanted["is_active"] = bool(is_active)
    changes = {name: [getattr(user, name), value] for name, value in wanted.items() if getattr(user, name) != value}

    problems = _Problems()
    if user.pk == admin.pk:
        if "role" in changes:
            problems.add("role", OWN_ROLE, OWN_ROLE)
        if changes.get("is_active", [None, None])[1] is False:
            problems.add("is_active", OWN_DEACTIVATION, OWN_DEACTIVATION)
    if "role" in changes:
        _check_role(problems, admin.organisation, role)
    if password is not None:
        candidate = copy.copy(user)
        for name, (_before, after) in changes.items():
            setattr(candidate, name, after)
        _check_password(problems, password, candidate)
    problems.raise_if_any()

    if not changes and password is None:
        return user
    for name, (_before, after) in changes.items():
        setattr(user, name, after)
    update_fields = list(changes)
    if password is not None:
        user.set_password(password)
        update_fields.append("password")
    detail = {"changes": changes}
    if password is not None:
        detail["password_reset"] = True
    with transaction.atomic():
        user.save(update_fields=update_fields)
        if not user.is_active:
            Token.objects.filter(user=user).delete()
        if password is not None:
            password_set_by_admin(user, admin=admin, request=request)  # they choose their own at next sign-in
        audit(
            AuditEvent.Action.CHANGED,
            actor=admin,
            request=request,
            object="user",
            user_id=user.pk,
            username=user.username,
            **detail,
        )
    return user


def user_set_active(*, admin, user, is_active, request=None):
    """Deactivate (revoking API tokens) or reactivate a managed user."""
    return user_update(admin=admin, user=user, is_active=is_active, request=request)
