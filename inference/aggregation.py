"""Case-level AI result from the per-image predictions: a pure function (no database, no Django).

The case result is the mean of the images' probability vectors. Each image's own result stays in
the output, so a reader sees which image said what. The case is flagged for attention when:

- the images disagree on the label (two smears of one patient should not tell different stories);
- the top mean probability is below the threshold (the model is unsure);
- some images could not be analysed (the result rests on part of the case only);
- some images are not blood smears (``is_smear`` False): they are left out of the mean, with why;
- some images are flagged (outside validated conditions, low confidence: Prediction.flags).

**No consensus** (``consensus`` False, ``label`` None, ``label`` of the mean kept as
``leading_label``): the analysed images disagree on the label AND either no class has a strict
majority of the images' votes (one image one vote: 1-1, 1-1-1, 2-2...) or the top two classes of
the mean probability are less than ``NO_CONSENSUS_MARGIN`` apart. The case then names no subtype:
"No consensus — images disagree" (a 3-image case once won 33.4% to 33.3%). Images that agree, or
a clear majority (2 of 3) with a clear mean, still give the label, flagged as disagreeing.
"""

from dataclasses import dataclass, field

NO_CONSENSUS = "no_consensus"  # what case_ai_suggestion records for such a case
NO_CONSENSUS_TEXT = "No consensus — images disagree"
NO_CONSENSUS_MARGIN = 0.10


@dataclass(frozen=True)
class CaseResult:
    label: str | None
    probabilities: dict  # class name -> mean probability, in class order
    top_probability: float | None
    attention: bool
    reasons: list = field(default_factory=list)
    per_image: list = field(default_factory=list)  # [{"smear": id, "label": ..., "probabilities": {...}}]
    analysed: int = 0
    failed: int = 0
    not_smear: int = 0
    consensus: bool = True
    leading_label: str | None = None  # the top class of the mean, also when there is no consensus

    def as_dict(self):
        return {
            "label": self.label,
            "probabilities": dict(self.probabilities),
            "top_probability": self.top_probability,
            "attention": self.attention,
            "reasons": list(self.reasons),
            "per_image": [dict(item) for item in self.per_image],
            "analysed": self.analysed,
            "failed": self.failed,
            "not_smear": self.not_smear,
            "consensus": self.consensus,
            "leading_label": self.leading_label,
        }


def _top(probabilities):
    # Ties go to the class listed first, so the result never depends on dict iteration quirks.
    best_label, best_value = None, None
    for name, value in probabilities.items():
        if best_value is None or value > best_value:
            best_label, best_value = name, value
    return best_label, best_value


def aggregate(predictions, *, threshold, class_names=None, failed=0, display=str):
    """Combine per-image predictions into a case result.

    ``predictions``: iterable of mappings with ``probabilities`` (class name -> probability) and
    optionally ``smear`` (an id) and ``label``. ``threshold``: a top mean probability below it flags
    the case. ``class_names``: output order (default: the order of the first prediction; classes
    missing from an image count as 0). ``failed``: images whose analysis failed. ``display``: how a
    class name is written in the reasons (people read "Pre-B ALL", not "pre_b").
    Returns a CaseResult; with no predictions its label is None and it is flagged only if some failed.
    """
    items = [dict(p) for p in predictions]
    rejected = [item for item in items if item.get("is_smear") is False]
    items = [item for item in items if item.get("is_smear") is not False]
    reasons = []
    if failed:
        total = len(items) + len(rejected) + failed
        reasons.append(f"{failed} of {total} image{'s' if total != 1 else ''} could not be analysed.")
    for item in rejected:
        why = "; ".join(item.get("smear_reasons") or []) or "unlike a stained smear"
        who = item.get("name") or f"Image {item.get('smear')}"
        reasons.append(f"{who} is not a blood smear ({why}); it is left out of the case result.")
    rejected_rows = [
        {
            "smear": item.get("smear"),
            "label": item.get("label"),
            "is_smear": False,
            "smear_reasons": list(item.get("smear_reasons") or []),
            "probabilities": {},
            "top_probability": None,
        }
        for item in rejected
    ]
    if not items:
        return CaseResult(
            label=None,
            probabilities={},
            top_probability=None,
            attention=bool(reasons),
            reasons=reasons,
            per_image=rejected_rows,
            analysed=0,
            failed=failed,
            not_smear=len(rejected),
        )

    names = list(class_names) if class_names else list(items[0]["probabilities"])
    for item in items[1:]:
        names += [name for name in item["probabilities"] if name not in names]
    sums = dict.fromkeys(names, 0.0)
    per_image = []
    for item in items:
        probabilities = {name: float(item["probabilities"].get(name, 0.0)) for name in names}
        for name, value in probabilities.items():
            sums[name] += value
        label = item.get("label") or _top(probabilities)[0]
        per_image.append(
            {
                "smear": item.get("smear"),
                "label": label,
                "probabilities": probabilities,
                "top_probability": probabilities.get(label),
                "flags": list(item.get("flags") or []),
            }
        )
    mean = {name: total / len(items) for name, total in sums.items()}
    label, top = _top(mean)
    leading = label

    flagged = [image for image in per_image if image["flags"]]
    if flagged:
        kinds = sorted({flag for image in flagged for flag in image["flags"]})
        reasons.append(f"{len(flagged)} of {len(per_image)} analysed images flagged: {'; '.join(kinds)}.")
    labels = {image["label"] for image in per_image}
    consensus = not has_no_consensus([image["label"] for image in per_image], mean)
    if len(labels) > 1:
        reasons.insert(0, f"The images disagree: {', '.join(display(label) for label in sorted(labels))}.")
    if not consensus:
        reasons.insert(0, f"{NO_CONSENSUS_TEXT}: no subtype is suggested for the case.")
        label = None
    if top < threshold:
        reasons.insert(0, f"Low confidence: top probability {top:.0%} is below {threshold:.0%}.")
    return CaseResult(
        consensus=consensus,
        leading_label=leading,
        label=label,
        probabilities=mean,
        top_probability=top,
        attention=bool(reasons),
        reasons=reasons,
        per_image=per_image + rejected_rows,
        analysed=len(items),
        failed=failed,
        not_smear=len(rejected),
    )


def has_no_consensus(labels, mean_probabilities, margin=NO_CONSENSUS_MARGIN):
    """True when the images' ``labels`` disagree and no label has a strict majority of the votes,
    or the top two ``mean_probabilities`` are less than ``margin`` apart (see the module docstring)."""
    labels = list(labels)
    if len(set(labels)) <= 1:
        return False
    votes = max(labels.count(label) for label in set(labels))
    if votes * 2 <= len(labels):
        return True
    values = sorted(mean_probabilities.values(), reverse=True)
    return len(values) > 1 and values[0] - values[1] < margin
