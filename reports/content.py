"""What a report version says, gathered once for the PDF and the FHIR bundle alike.

A version is built from its own signed review and the ones before it (reviews are read-only), so
version 1 reads the same whenever it is built, also after an amendment.
"""

import re
from dataclasses import dataclass, field

from cases.models import Diagnosis, Review
from inference.models import Prediction
from inference.status import case_analysis_data, label_display

DECISION_SUPPORT = (
    "The AI result is decision support only: it was computed automatically from the images and is "
    "not a diagnosis. The diagnosis in this report is the signing pathologist's."
)

_CODES = re.compile(r"\b(" + "|".join(re.escape(code) for code in Diagnosis.values) + r")\b")


def humanise(text):
    """Class codes inside a sentence ("The images disagree: pre_b, pro_b.") in the words people read."""
    return _CODES.sub(lambda match: label_display(match.group(1)), text or "")


def flag_text(flag):
    """A prediction flag as a sentence: "Outside validated conditions" (flags are short strings;
    a dict with a message, label or code is read too)."""
    if isinstance(flag, dict):
        flag = flag.get("message") or flag.get("label") or flag.get("code") or ""
    text = humanise(str(flag)).strip()
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Probability:
    code: str
    label: str
    value: float


@dataclass(frozen=True)
class ImageResult:
    smear_id: int
    name: str
    label: str  # human words; "Not a blood smear" for the smear check's verdict
    top_probability: float | None
    is_smear: bool
    smear_reasons: list = field(default_factory=list)
    flags: list = field(default_factory=list)


@dataclass(frozen=True)
class AiResult:
    model_version_id: int
    model_version: str
    label_code: str
    label: str
    top_probability: float | None
    probabilities: list  # [Probability] in the model's class order
    attention: bool
    reasons: list  # case-level "look twice" reasons, in words
    images: list  # [ImageResult]
    analysed: int
    failed: int
    not_smear: int

    @property
    def flags(self):
        """Every image's flags with its name: "smear-1.png: outside validated conditions"."""
        return [f"{image.name}: {flag}" for image in self.images for flag in image.flags]


@dataclass(frozen=True)
class ReportContent:
    case: object
    review: object
    number: int
    previous: object  # the review this one supersedes, or None
    reviews: list  # this one and every earlier one, oldest first
    smears: list
    ai: AiResult | None
    decision_support: str = DECISION_SUPPORT

    @property
    def is_amendment(self):
        return self.review.kind == Review.Kind.AMENDMENT

    @property
    def status(self):
        return "amended" if self.is_amendment else "final"

    @property
    def diagnosis_label(self):
        return self.review.get_diagnosis_display()

    @property
    def previous_label(self):
        return self.previous.get_diagnosis_display() if self.previous else ""

    @property
    def change(self):
        """What an amendment changed, in one sentence ("" for the signature)."""
        if not self.is_amendment:
            return ""
        if self.previous is not None and self.previous.diagnosis == self.review.diagnosis:
            return f"Diagnosis unchanged ({self.diagnosis_label}); the report was re-issued"
        return f"Diagnosis changed from {self.previous_label or 'none'} to {self.diagnosis_label}"

    @property
    def signer_name(self):
        return person_name(self.review.signed_by)


def person_name(user):
    return user.get_full_name() or user.username


def _ai_result(case):
    data = case_analysis_data(case)
    result, version = data["result"], data["model_version"]
    if not result or not version:
        return None
    names = {row["id"]: row["filename"] for row in data["smears"]}
    predictions = {p.smear_id: p for p in Prediction.objects.filter(smear__case=case, model_version_id=version["id"])}
    images = []
    for smear_id, name in names.items():
        prediction = predictions.get(smear_id)
        if prediction is None:
            continue
        images.append(
            ImageResult(
                smear_id=smear_id,
                name=name,
                label=label_display(prediction.label),
                top_probability=None if not prediction.is_smear else prediction.top_probability,
                is_smear=prediction.is_smear,
                smear_reasons=[humanise(reason) for reason in prediction.smear_reasons or []],
                # A rejected image's own flag repeats its verdict, which the report gives once.
                flags=[
                    text
                    for text in (flag_text(flag) for flag in prediction.flags or [])
                    if text and (prediction.is_smear or not text.lower().startswith("not a blood smear"))
                ],
            )
        )
    return AiResult(
        model_version_id=version["id"],
        model_version=version["name"],
        label_code=result["label"] or "",
        label=result["label_display"] or "No result",
        top_probability=result["top_probability"],
        probabilities=[Probability(row["name"], row["label"], row["value"]) for row in result["probability_rows"]],
        attention=bool(result["attention"]),
        reasons=[humanise(reason) for reason in result["reasons"]],
        images=images,
        analysed=result["analysed"],
        failed=result["failed"],
        not_smear=result["not_smear"],
    )


def report_content(review):
    """Everything report version ``review`` shows."""
    case = review.case
    reviews = [
        r
        for r in case.diagnoses.select_related("signed_by").order_by("signed_at", "pk")
        if (r.signed_at, r.pk) <= (review.signed_at, review.pk)
    ]
    previous = reviews[-2] if len(reviews) > 1 else None
    return ReportContent(
        case=case,
        review=review,
        number=len(reviews),
        previous=previous,
        reviews=reviews,
        smears=list(case.smears.order_by("pk")),
        ai=_ai_result(case),
    )
