"""Every write to the clinical record goes through these functions (views and tasks call them)."""

import logging
from functools import partial

from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit
from cases.access import laboratories_for
from cases.models import Case, Diagnosis, Patient, Review, Smear
from cases.signals import case_amended, case_signed, case_submitted
from cases.storage import StorageUnavailable
from cases.uploads import validate_uploads
from core import permissions
from core.errors import AlreadySigned, DomainError, InvalidTransition
from core.permissions import require_role

logger = logging.getLogger(__name__)


def patient_register(*, user, mrn, given_name, family_name, sex, date_of_birth, request=None):
    require_role(permissions.works_with_patients(user), "Only clinicians register patients.")
    mrn = mrn.strip()
    if not mrn:
        raise DomainError("The medical record number is required.", details={"mrn": ["This field is required."]})
    if date_of_birth > timezone.localdate():
        raise DomainError("The date of birth is in the future.", details={"date_of_birth": ["Date is in the future."]})
    try:
        with transaction.atomic():
            patient = Patient.objects.create(
                organisation_id=user.organisation_id,
                mrn=mrn,
                given_name=given_name.strip(),
                family_name=family_name.strip(),
                sex=sex,
                date_of_birth=date_of_birth,
                created_by=user,
            )
    except IntegrityError:
        raise DomainError(
            f"A patient with medical record number {mrn} is already registered at your organisation.",
            details={"mrn": ["Already registered."]},
        ) from None
    audit(AuditEvent.Action.CREATED, actor=user, patient=patient, request=request, object="patient")
    return patient


def _choose_laboratory(user, laboratory):
    linked = list(laboratories_for(user))
    if not linked:
        raise DomainError("Your organisation has no reading laboratory to send cases to. Ask an administrator.")
    if laboratory is None:
        if len(linked) > 1:
            raise DomainError(
                "Choose the reading laboratory for this case.", details={"laboratory": ["This field is required."]}
            )
        return linked[0]
    if laboratory not in linked:
        raise DomainError(
            "Your organisation does not refer cases to that laboratory.",
            details={"laboratory": ["Not a laboratory your organisation refers to."]},
        )
    return laboratory


def case_submit(
    *,
    user,
    patient,
    files,
    clinical_notes="",
    priority=Case.Priority.ROUTINE,
    laboratory=None,
    model_version=None,
    request=None,
):
    """Create a case with its smears, all or nothing: one bad file and no case is created."""
    require_role(permissions.works_with_patients(user), "Only clinicians submit cases.")
    if patient.organisation_id != user.organisation_id:
        raise DomainError(
            "That patient is not registered at your organisation.", details={"patient": ["Unknown patient."]}
        )
    if priority not in Case.Priority.values:
        raise DomainError(f"Unknown priority {priority!r}.", details={"priority": ["Choose routine or urgent."]})
    laboratory = _choose_laboratory(user, laboratory)
    images = validate_uploads(files)

    stored = []
    committed = []  # set by the first on-commit callback, before the analysis is published
    try:
        with transaction.atomic():
            transaction.on_commit(partial(committed.append, True))
            case = Case.objects.create(
                patient=patient,
                site_id=user.organisation_id,
                laboratory=laboratory,
                submitted_by=user,
                clinical_notes=clinical_notes,
                priority=priority,
                requested_model_version=model_version,
            )
            smears = []
            for image in images:
                smear = Smear(
                    case=case,
                    original_filename=image.original_filename,
                    sha256=image.sha256,
                    width=image.width,
                    height=image.height,
                    format=image.format,
                    size_bytes=image.size_bytes,
                )
                try:
                    smear.image.save(f"smear.{image.extension}", ContentFile(image.content), save=False)
                except OSError as exc:  # disk full, storage down: the client can only retry later
                    logger.error("Could not store an uploaded image: %s", exc)
                    raise StorageUnavailable() from exc
                stored.append(smear.image.name)
                smears.append(smear)
            Smear.objects.bulk_create(smears)  # one INSERT for the upload's smears, in file order
            audit(AuditEvent.Action.SUBMITTED, actor=user, case=case, request=request, smears=len(images))
            case_submitted.send(sender=Case, case=case, smears=smears, model_version=model_version)
    except BaseException:
        # The database rolled back: remove the files it no longer points to. Once it committed,
        # the files belong to a saved case, whatever fails after (the publish, a worker timeout).
        if not committed:
            _delete_stored_files(stored)
        raise
    return case


def _delete_stored_files(names):
    storage = Smear._meta.get_field("image").storage
    for name in names:
        try:
            storage.delete(name)
        except Exception:  # noqa: BLE001 - best effort clean-up; the original error matters more
            logger.exception("Could not remove orphaned upload %s", name)


def _statuses_leading_to(to_status):
    return [s for s, targets in Case.TRANSITIONS.items() if to_status in targets]


def case_move(case, to_status):
    """Move a case to another status if the move is allowed from the status it has now."""
    now = timezone.now()
    changed = Case.objects.filter(pk=case.pk, status__in=_statuses_leading_to(to_status)).update(
        status=to_status, updated_at=now
    )
    if changed:  # the row now holds exactly these values: no need to read it back
        case.status, case.updated_at = to_status, now
        return case
    case.refresh_from_db(fields=["status", "updated_at"])
    if case.status != to_status:  # already there is fine; anything else cannot move
        raise InvalidTransition(
            f"A case that is {case.get_status_display().lower()} cannot become {Case.Status(to_status).label.lower()}."
        )
    return case


def case_move_if(case_id, to_status, condition):
    """Move the case when the move is allowed from its status *and* ``condition`` (a Q or boolean
    expression on Case) holds, in one conditional UPDATE; True when it moved. Never raises: a case
    that cannot move, or whose condition fails, is left as it is."""
    changed = (
        Case.objects.filter(pk=case_id, status__in=_statuses_leading_to(to_status))
        .filter(condition)
        .update(status=to_status, updated_at=timezone.now())
    )
    return bool(changed)


def _check_signature_method(signature_method):
    # The caller verified the signer's identity (security.signature.verify_signature) and says how.
    if signature_method not in Review.SignatureMethod.values:
        raise DomainError(
            "A signature needs the signer's password or authentication code.",
            details={"password": ["Required to sign."]},
        )


def case_sign(*, user, case, diagnosis, comment="", request=None, signature_method):
    """Sign the final diagnosis. Of two pathologists signing at once exactly one succeeds.

    Receivers of ``case_signed`` add to the signature in the same transaction (the analysis app
    records the AI's case-level suggestion at that moment).
    """
    require_role(permissions.is_case_pathologist(user, case), "Only the laboratory's pathologists sign.")
    _check_signature_method(signature_method)
    if diagnosis not in Diagnosis.values:
        raise DomainError(f"Unknown diagnosis {diagnosis!r}.", details={"diagnosis": ["Not a valid choice."]})
    now = timezone.now()
    with transaction.atomic():
        # The conditional update is the lock: only one signer finds the case still unsigned.
        claimed = Case.objects.filter(pk=case.pk, status__in=_signable_statuses()).update(
            status=Case.Status.SIGNED, signed_by=user, signed_at=now, updated_at=now
        )
        if claimed:
            review = Review.objects.create(
                case=case,
                kind=Review.Kind.SIGNATURE,
                diagnosis=diagnosis,
                comment=comment,
                signed_by=user,
                signed_at=now,
                signature_method=signature_method,
            )
            case_signed.send(sender=Case, case=case, review=review)
            audit(
                AuditEvent.Action.SIGNED,
                actor=user,
                case=case,
                request=request,
                diagnosis=diagnosis,
                signature_method=signature_method,
            )
    case.refresh_from_db()
    if claimed:
        return review
    if case.is_final:
        audit(AuditEvent.Action.SIGN_REFUSED, actor=user, case=case, request=request)
        raise AlreadySigned(
            f"This case was already signed by {case.signed_by} at {timezone.localtime(case.signed_at):%Y-%m-%d %H:%M}.",
            details={"signed_by": str(case.signed_by), "signed_at": case.signed_at.isoformat()},
        )
    raise InvalidTransition(f"A case that is {case.get_status_display().lower()} cannot be signed.")


def _signable_statuses():
    return [s for s, targets in Case.TRANSITIONS.items() if Case.Status.SIGNED in targets]


def case_amend(*, user, case, diagnosis, reason, comment="", request=None, signature_method):
    """Correct a signed case. The signed version stays; the amendment says who, what and why."""
    require_role(permissions.is_case_pathologist(user, case), "Only the laboratory's pathologists amend.")
    _check_signature_method(signature_method)
    if diagnosis not in Diagnosis.values:
        raise DomainError(f"Unknown diagnosis {diagnosis!r}.", details={"diagnosis": ["Not a valid choice."]})
    if not reason or not reason.strip():
        raise DomainError("Say why the signed diagnosis is amended.", details={"reason": ["This field is required."]})
    now = timezone.now()
    with transaction.atomic():
        locked = Case.objects.select_for_update().get(pk=case.pk)
        if not locked.is_final:
            raise InvalidTransition("Only a signed case can be amended; sign it first.")
        previous = locked.current_diagnosis
        review = Review.objects.create(
            case=locked,
            kind=Review.Kind.AMENDMENT,
            diagnosis=diagnosis,
            comment=comment,
            reason=reason.strip(),
            supersedes=previous,
            signed_by=user,
            signed_at=now,
            signature_method=signature_method,
        )
        Case.objects.filter(pk=locked.pk).update(status=Case.Status.AMENDED, updated_at=now)
        locked.status = Case.Status.AMENDED
        case_amended.send(sender=Case, case=locked, review=review, previous=previous)
        audit(
            AuditEvent.Action.AMENDED,
            actor=user,
            case=locked,
            request=request,
            previous=previous.diagnosis if previous else None,
            diagnosis=diagnosis,
            reason=reason.strip(),
            signature_method=signature_method,
        )
    case.refresh_from_db()
    return review


def case_assign(*, user, case, assignee, request=None):
    """Give an unsigned case to one of its laboratory's pathologists (``assignee``), or release it
    (``assignee`` None). A pathologist takes a case by assigning it to themselves."""
    require_role(permissions.is_case_pathologist(user, case), "Only the laboratory's pathologists assign cases.")
    if assignee is not None and not permissions.is_case_pathologist(assignee, case):
        raise DomainError(
            "Cases are assigned to pathologists of the reading laboratory only.",
            details={"assignee": ["Not a pathologist of this laboratory."]},
        )
    now = timezone.now()
    with transaction.atomic():
        locked = Case.objects.select_for_update().get(pk=case.pk)
        if locked.is_final:
            raise InvalidTransition("A signed case is no longer in the queue: it cannot be assigned.")
        previous = locked.assigned_to
        if previous == assignee:  # nothing changes: no write, no audit event
            case.assigned_to, case.assigned_at = locked.assigned_to, locked.assigned_at
            return case
        Case.objects.filter(pk=locked.pk).update(
            assigned_to=assignee, assigned_at=now if assignee else None, updated_at=now
        )
        audit(
            AuditEvent.Action.CHANGED,
            actor=user,
            case=locked,
            request=request,
            field="assigned_to",
            previous=previous.username if previous else None,
            assigned_to=assignee.username if assignee else None,
        )
    case.assigned_to, case.assigned_at = assignee, now if assignee else None
    return case
