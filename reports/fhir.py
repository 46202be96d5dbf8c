"""A signed case as a FHIR R4 Bundle (plain dicts, JSON-ready): what a hospital record system imports.

A ``collection`` Bundle: the DiagnosticReport (status final or amended, the PDF as its presented
form), one Observation for the AI result (per-class probabilities as components, the model
version as its Device) and one for the pathologist's diagnosis, a Media per image, the Patient,
both Organizations, the signing Practitioner and a Provenance naming the model version.

Entries reference each other by ``urn:uuid:`` full URLs, stable per object (uuid5), so a second
export of the same version carries the same ids and a receiving server can update in place.
"""

import base64
import hashlib
import uuid

from django.urls import reverse
from django.utils import timezone

from reports.content import person_name

NAMESPACE = uuid.UUID("0b5e4c9e-3f7a-4a57-9d8e-5c1f0d7a2e61")
CODE_SYSTEM = "urn:telediag:code"
DIAGNOSIS_SYSTEM = "urn:telediag:diagnosis"
ORGANISATION_SYSTEM = "urn:telediag:organisation"
USER_SYSTEM = "urn:telediag:user"
CASE_SYSTEM = "urn:telediag:case"
MODEL_VERSION_SYSTEM = "urn:telediag:model-version"
GENDER = {"F": "female", "M": "male", "O": "other", "U": "unknown"}
LAB_CATEGORY = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "laboratory",
            "display": "Laboratory",
        }
    ]
}
HAEMATOLOGY = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "HM", "display": "Hematology"}]
}
REPORT_CODE = {
    "coding": [
        {
            "system": CODE_SYSTEM,
            "code": "all-smear-review",
            "display": "Blood smear review for acute lymphoblastic leukaemia",
        }
    ],
    "text": "Blood smear review for acute lymphoblastic leukaemia",
}


def _id(kind, key):
    return str(uuid.uuid5(NAMESPACE, f"{kind}/{key}"))


def _ref(resource, display=None):
    reference = {"reference": f"urn:uuid:{resource['id']}"}
    if display:
        reference["display"] = display
    return reference


def _instant(value):
    return value.isoformat(timespec="seconds")


def _diagnosis_concept(code, display):
    return {"coding": [{"system": DIAGNOSIS_SYSTEM, "code": code, "display": display}], "text": display}


def _absolute(base_url, path):
    return f"{base_url.rstrip('/')}{path}" if base_url else path


def _organisation(organisation, role):
    return {
        "resourceType": "Organization",
        "id": _id("organisation", organisation.pk),
        "identifier": [{"system": ORGANISATION_SYSTEM, "value": str(organisation.pk)}],
        "active": organisation.is_active,
        "type": [{"text": role}],
        "name": organisation.name,
    }


def _practitioner(user):
    name = {"text": person_name(user)}
    if user.last_name:
        name["family"] = user.last_name
    if user.first_name:
        name["given"] = [user.first_name]
    return {
        "resourceType": "Practitioner",
        "id": _id("user", user.pk),
        "identifier": [{"system": USER_SYSTEM, "value": user.username}],
        "active": user.is_active,
        "name": [name],
    }


def _patient(patient, site):
    return {
        "resourceType": "Patient",
        "id": _id("patient", patient.pk),
        "identifier": [
            {
                "use": "usual",
                "type": {"text": "Medical record number"},
                "system": f"{ORGANISATION_SYSTEM}:{site.pk}:mrn",
                "value": patient.mrn,
            }
        ],
        "name": [{"family": patient.family_name, "given": [patient.given_name], "text": patient.full_name}],
        "gender": GENDER.get(patient.sex, "unknown"),
        "birthDate": patient.date_of_birth.isoformat(),
    }


def _device(ai, lab):
    return {
        "resourceType": "Device",
        "id": _id("model-version", ai.model_version_id),
        "identifier": [{"system": MODEL_VERSION_SYSTEM, "value": ai.model_version}],
        "status": "active",
        "deviceName": [{"name": f"Telediag ALL classifier {ai.model_version}", "type": "model-name"}],
        "type": {"text": "AI decision-support software (image classifier)"},
        "version": [{"value": ai.model_version}],
        "owner": _ref(lab),
    }


def _media(smear, patient, base_url):
    return {
        "resourceType": "Media",
        "id": _id("smear", smear.pk),
        "status": "completed",
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/media-type",
                    "code": "image",
                    "display": "Image",
                }
            ]
        },
        "subject": _ref(patient),
        "createdDateTime": _instant(smear.created_at),
        "width": smear.width,
        "height": smear.height,
        "content": {
            "contentType": "image/png" if smear.format.upper() == "PNG" else "image/jpeg",
            "url": _absolute(base_url, reverse("api-smear-image", args=[smear.pk])),  # token or session
            "size": smear.size_bytes,
            "title": smear.original_filename or f"Image {smear.pk}",
        },
    }


def _ai_observation(content, ai, patient, device, media):
    notes = [content.decision_support]
    notes += [f"Look twice: {reason}" for reason in ai.reasons]
    notes += [f"Flag — {flag}" for flag in ai.flags]
    value = (
        _diagnosis_concept(ai.label_code, ai.label)
        if ai.label_code
        else {"text": ai.label or "No subtype: no image is a blood smear"}
    )
    observation = {
        "resourceType": "Observation",
        "id": _id("ai-result", f"{content.case.pk}/{ai.model_version_id}"),
        "status": "final",
        "category": [LAB_CATEGORY],
        "code": {
            "coding": [{"system": CODE_SYSTEM, "code": "ai-all-subtype", "display": "AI suggestion: ALL subtype"}],
            "text": "AI suggestion (decision support): ALL subtype",
        },
        "subject": _ref(patient),
        "effectiveDateTime": _instant(content.case.created_at),
        "device": _ref(device, f"Model version {ai.model_version}"),
        "method": {"text": f"Image classifier, model version {ai.model_version}; mean of the images' probabilities"},
        "valueCodeableConcept": value,
        "derivedFrom": [_ref(item) for item in media],
        "note": [{"text": text} for text in notes],
        "component": [
            {
                "code": _diagnosis_concept(row.code, row.label),
                "valueQuantity": {
                    "value": round(float(row.value), 6),
                    "unit": "probability",
                    "system": "http://unitsofmeasure.org",
                    "code": "1",
                },
            }
            for row in ai.probabilities
        ],
    }
    if ai.attention:
        observation["interpretation"] = [{"text": "Attention: " + " ".join(ai.reasons or ai.flags)}]
    return observation


def _diagnosis_observation(content, patient, practitioner, lab):
    review = content.review
    observation = {
        "resourceType": "Observation",
        "id": _id("diagnosis", review.pk),
        "status": content.status,
        "category": [LAB_CATEGORY],
        "code": {
            "coding": [{"system": CODE_SYSTEM, "code": "final-diagnosis", "display": "Pathologist's diagnosis"}],
            "text": "Pathologist's diagnosis",
        },
        "subject": _ref(patient),
        "effectiveDateTime": _instant(review.signed_at),
        "issued": _instant(review.signed_at),
        "performer": [_ref(practitioner, content.signer_name), _ref(lab)],
        "valueCodeableConcept": _diagnosis_concept(review.diagnosis, content.diagnosis_label),
    }
    notes = []
    if review.comment:
        notes.append({"text": review.comment})
    if content.is_amendment:
        notes.append({"text": f"AMENDED: {content.change}. Reason: {review.reason}"})
    if notes:
        observation["note"] = notes
    return observation


def _conclusion(content):
    parts = [content.diagnosis_label + "."]
    if content.review.comment:
        parts.append(content.review.comment)
    if content.is_amendment:
        parts.insert(
            0,
            f"AMENDED (version {content.number}): {content.change}; reason: {content.review.reason}.",
        )
    return " ".join(parts)


def report_bundle(content, version, pdf, *, base_url=""):
    """The FHIR R4 Bundle of report ``version`` (its ``content`` and stored ``pdf`` bytes)."""
    case, review = content.case, content.review
    site = _organisation(case.site, "Referring site")
    lab = _organisation(case.laboratory, "Reading laboratory")
    patient = _patient(case.patient, case.site)
    patient["managingOrganization"] = _ref(site, case.site.name)
    practitioner = _practitioner(review.signed_by)
    media = [_media(smear, patient, base_url) for smear in content.smears]
    diagnosis = _diagnosis_observation(content, patient, practitioner, lab)
    ai = content.ai
    device = _device(ai, lab) if ai else None
    ai_observation = _ai_observation(content, ai, patient, device, media) if ai else None

    report = {
        "resourceType": "DiagnosticReport",
        "id": _id("report", f"{case.pk}/{version.number}"),
        "identifier": [
            {"system": CASE_SYSTEM, "value": case.reference},
            {"system": f"{CASE_SYSTEM}:report-version", "value": f"{case.reference}-v{version.number}"},
        ],
        "status": content.status,
        "category": [HAEMATOLOGY],
        "code": REPORT_CODE,
        "subject": _ref(patient, case.patient.full_name),
        "effectiveDateTime": _instant(case.created_at),
        "issued": _instant(review.signed_at),
        "performer": [_ref(lab, case.laboratory.name)],
        "resultsInterpreter": [_ref(practitioner, content.signer_name)],
        "result": [_ref(diagnosis)] + ([_ref(ai_observation)] if ai_observation else []),
        "media": [{"comment": item["content"]["title"], "link": _ref(item)} for item in media],
        "conclusion": _conclusion(content),
        "conclusionCode": [_diagnosis_concept(review.diagnosis, content.diagnosis_label)],
        "presentedForm": [
            {
                "contentType": "application/pdf",
                "language": "en",
                "data": base64.b64encode(pdf).decode("ascii"),
                "size": len(pdf),
                "hash": base64.b64encode(hashlib.sha1(pdf).digest()).decode("ascii"),  # FHIR: SHA-1
                "title": version.filename,
                "creation": _instant(version.created_at),
            }
        ],
    }

    provenance = {
        "resourceType": "Provenance",
        "id": _id("provenance", f"{case.pk}/{version.number}"),
        "target": [_ref(report)] + ([_ref(ai_observation)] if ai_observation else []),
        "recorded": _instant(review.signed_at),
        "activity": {"text": "Amended" if content.is_amendment else "Signed"},
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "verifier",
                            "display": "Verifier",
                        }
                    ]
                },
                "who": _ref(practitioner, content.signer_name),
                "onBehalfOf": _ref(lab, case.laboratory.name),
            }
        ],
    }
    if ai:
        provenance["agent"].append(
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "assembler",
                            "display": "Assembler",
                        }
                    ]
                },
                "who": _ref(device, f"AI model version {ai.model_version}"),
            }
        )
        provenance["entity"] = [
            {
                "role": "source",
                "what": {
                    "identifier": {"system": MODEL_VERSION_SYSTEM, "value": ai.model_version},
                    "display": f"AI model version {ai.model_version}",
                },
            }
        ]

    resources = [report, diagnosis]
    if ai_observation:
        resources += [ai_observation, device]
    resources += [*media, patient, site, lab, practitioner, provenance]
    return {
        "resourceType": "Bundle",
        "id": _id("bundle", f"{case.pk}/{version.number}"),
        "identifier": {"system": f"{CASE_SYSTEM}:report-version", "value": f"{case.reference}-v{version.number}"},
        "type": "collection",
        "timestamp": _instant(timezone.now()),
        "entry": [{"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource} for resource in resources],
    }
