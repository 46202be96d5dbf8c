"""Form helpers shared by every app's portal forms: Bootstrap styling and domain errors on fields."""

from django import forms


class BootstrapFormMixin:
    """Bootstrap classes on every widget, and is-invalid on the fields that have errors."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            widget = field.widget
            input_type = getattr(widget, "input_type", None)
            if input_type in ("checkbox", "radio"):
                base = "form-check-input"
            elif isinstance(widget, forms.Select):
                base = "form-select"
            else:
                base = "form-control"
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} {base}".strip()

    def add_error(self, field, error):
        super().add_error(field, error)
        names = [field] if field else []
        if field is None and hasattr(error, "error_dict"):
            names = list(error.error_dict)
        for name in names:
            if name in self.fields:
                widget = self.fields[name].widget
                if "is-invalid" not in widget.attrs.get("class", ""):
                    widget.attrs["class"] = f"{widget.attrs.get('class', '')} is-invalid".strip()


def apply_domain_error(form, error):
    """Show a DomainError on a form: details keyed by a form field go under that field."""
    placed = False
    for key, messages in (error.details or {}).items():
        if key in form.fields:
            if isinstance(messages, str):
                messages = [messages]
            for message in messages:
                form.add_error(key, str(message))
            placed = True
    form.add_error(None, error.message)
    return placed
