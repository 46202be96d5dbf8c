"""Forms a lab admin uses to manage the users of their own organisation."""
from django import forms
from django.contrib.auth import password_validation

from accounts.models import User
from cases.forms import BootstrapFormMixin


class _PasswordPairMixin:
    password_required = True

    def _clean_password_pair(self, user):
        first = self.cleaned_data.get("password1") or ""
        second = self.cleaned_data.get("password2") or ""
        if not first and not second:
            if self.password_required:
                self.add_error("password1", "Choose an initial password.")
            return
        if first != second:
            self.add_error("password2", "The two passwords differ.")
            return
        try:
            password_validation.validate_password(first, user)
        except forms.ValidationError as error:
            self.add_error("password1", error)


class UserCreateForm(BootstrapFormMixin, _PasswordPairMixin, forms.ModelForm):
    role = forms.ChoiceField(choices=User.Role.choices)
    password1 = forms.CharField(
        label="Initial password", strip=False, required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Repeat the password", strip=False, required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = User
        fields = ["username", "first_name", "last_name", "email", "role"]

    def __init__(self, *args, organisation, **kwargs):
        super().__init__(*args, **kwargs)
        self.organisation = organisation
        self.instance.organisation = organisation
        for name in ("first_name", "last_name"):
            self.fields[name].required = True

    def clean(self):
        cleaned = super().clean()
        candidate = User(
            username=cleaned.get("username", ""), first_name=cleaned.get("first_name", ""),
            last_name=cleaned.get("last_name", ""), email=cleaned.get("email", ""),
        )
        self._clean_password_pair(candidate)
        return cleaned

    def save(self, commit=True):
        user = super().save(commit=False)
        user.organisation = self.organisation
        user.is_staff = False
        user.is_superuser = False
        user.set_password(self.cleaned_data["password1"])
        if commit:
            user.save()
        return user


class UserEditForm(BootstrapFormMixin, _PasswordPairMixin, forms.ModelForm):
    password_required = False
    role = forms.ChoiceField(choices=User.Role.choices)
    is_active = forms.BooleanField(
        label="Active (may sign in)", required=False,
        help_text="Deactivate instead of deleting: the audit trail keeps the user's name.",
    )
    password1 = forms.CharField(
        label="New password", strip=False, required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the current password.",
    )
    password2 = forms.CharField(
        label="Repeat the new password", strip=False, required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = User
        fields = ["first_name", "last_name", "email", "role", "is_active"]

    def __init__(self, *args, editor, **kwargs):
        super().__init__(*args, **kwargs)
        self.editor = editor
        for name in ("first_name", "last_name"):
            self.fields[name].required = True
        if self.instance.pk == editor.pk:
            # No lock-out by mistake: an admin cannot demote or deactivate themselves.
            self.fields["role"].disabled = True
            self.fields["is_active"].disabled = True
            self.fields["role"].help_text = "You cannot change your own role."

    def clean(self):
        cleaned = super().clean()
        self._clean_password_pair(self.instance)
        return cleaned

    def save(self, commit=True):
        user = super().save(commit=False)
        if self.cleaned_data.get("password1"):
            user.set_password(self.cleaned_data["password1"])
        if commit:
            user.save()
        return user
