"""How the AI analysis answers the clinical record's signals (connected in InferenceConfig.ready)."""

from django.dispatch import receiver

from cases.models import Review
from cases.signals import case_signed, case_submitted
from inference.services import case_analysis_request
from inference.status import case_ai_suggestion


@receiver(case_submitted, dispatch_uid="inference-analyse-submitted-case")
def analyse_submitted_case(sender, case, smears, model_version=None, **kwargs):
    case_analysis_request(case, model_version=model_version, smears=smears)


@receiver(case_signed, dispatch_uid="inference-record-ai-suggestion")
def record_ai_suggestion(sender, case, review, **kwargs):
    # How often pathologists agree with the AI is part of how a model is judged.
    review.ai_suggestion = case_ai_suggestion(case)
    Review.objects.filter(pk=review.pk).update(ai_suggestion=review.ai_suggestion)
