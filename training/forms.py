"""The admin's Training run form: one form field per RetrainOptions field, validated by RetrainOptions.

The fields are built from training.options (label, help, default, choices), so every setting
`manage.py retrain` takes can be set here too, with the same defaults; the request is stored as
``TrainingRun.options`` (RetrainOptions.to_json()).
"""

from django import forms

from training.errors import TrainingError
from training.models import TrainingRun
from training.options import STUDY_ARCHITECTURES, RetrainOptions, option_fields

PROMOTE_LABELS = {"best": "Promote the best validation accuracy"}


def option_form_field(option, default):
    """The form field for one RetrainOptions field (blank optional values mean the default)."""
    meta = option.metadata
    common = dict(label=meta["label"], help_text=meta["help"])
    kind = meta["kind"]
    if kind == "architectures":
        return forms.MultipleChoiceField(
            choices=[(c, c) for c in meta["choices"]],
            initial=list(STUDY_ARCHITECTURES),
            widget=forms.CheckboxSelectMultiple,
            **common,
        )
    if kind == "multichoice":
        return forms.MultipleChoiceField(
            choices=[(c, c) for c in meta["choices"]], required=False, widget=forms.CheckboxSelectMultiple, **common
        )
    if kind == "bool":
        return forms.BooleanField(required=False, initial=default, **common)
    if kind == "choice":
        choices = [(c, PROMOTE_LABELS.get(c, c)) for c in meta["choices"]]
        if default is None:
            return forms.ChoiceField(choices=[("", "No"), *choices], required=False, initial="", **common)
        return forms.ChoiceField(choices=choices, initial=default, **common)
    if kind == "path":  # the data folder is required; the others default to none
        return forms.CharField(max_length=500, required=option.name == "data_dir", **common)
    if kind == "int":
        return forms.IntegerField(required=default is not None, initial=default, **common)
    if kind == "float":
        return forms.FloatField(required=False, initial=default, **common)
    raise ValueError(f"No form field for option kind {kind!r}")


OPTION_NAMES = [option.name for option, _ in option_fields()]
RetrainOptionsFields = type(
    "RetrainOptionsFields",
    (forms.Form,),
    {option.name: option_form_field(option, default) for option, default in option_fields()},
)


class TrainingRunForm(RetrainOptionsFields, forms.ModelForm):
    class Meta:
        model = TrainingRun
        fields = []  # the request is TrainingRun.options, made from the option fields above in clean()

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        defaults = {option.name: default for option, default in option_fields()}
        values = {}
        for name in OPTION_NAMES:
            value = cleaned.get(name)
            values[name] = defaults[name] if value in (None, "") and not isinstance(defaults[name], bool) else value
        try:
            options = RetrainOptions(**values).validate(check_paths=False)
        except TrainingError as exc:
            raise forms.ValidationError(str(exc)) from exc
        self.instance.options = options.to_json()
        return cleaned

    def _post_clean(self):
        if not self._errors:  # a refused request has no options for the model to check again
            super()._post_clean()
