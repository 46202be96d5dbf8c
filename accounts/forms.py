"""Forms a lab admin uses to manage the users of their own organisation.

They only collect and shape input (required fields, the two password boxes agreeing). Every rule
(roles that suit the organisation, unique usernames, password strength, no self lock-out) is
checked by accounts.services, the same functions the API calls; ``show_domain_error`` puts the
service's refusal under the fields it names.
"""

from django import forms
from django.contrib.auth import password_validation
from django.contrib.auth.validators import UnicodeUsernameValidator

from accounts.models import User
from accounts.services import allowed_roles
from core.errors import DomainError
from core.forms import BootstrapFormMixin, apply_domain_error

# The services name the password "password"; the forms ask for it twice.
FIELD_FOR_DETAIL = {"password": "password1"}


class UserFilterForm(forms.Form):
    """The user list's search and role filter (a form, so that input no query can hold, such as a
    NUL character, is refused here instead of failing in the database)."""

    q = forms.CharField(required=False, max_length=120)
    role = forms.ChoiceField(required=False, choices=[("", "Any role"), *User.Role.choices])


class _UserFormMixin:
    def clean(self):
        cleaned = super().clean()
        self._clean_password_pair()
        return cleaned

    def _offer_roles(self, organisation, current=None):
        """Show only the roles that suit the organisation (the service refuses the others anyway).

        Only the rendered options are narrowed: validation still accepts every role, so a refused
        role is explained by the service's message, the same one the API gives.
        """
        offered = set(allowed_roles(organisation))
        if current:
            offered.add(current)  # never silently change a role the select could not show
        self.fields["role"].widget.choices = [(value, label) for value, label in User.Role.choices if value in offered]

    def _clean_password_pair(self):
        first = self.cleaned_data.get("password1") or ""
        second = self.cleaned_data.get("password2") or ""
        if (first or second) and first != second:
            self.add_error("password2", "The two passwords differ.")

    def password(self):
        return self.cleaned_data.get("password1") or None

    def show_domain_error(self, error):
        details = {FIELD_FOR_DETAIL.get(key, key): value for key, value in (error.details or {}).items()}
        apply_domain_error(self, DomainError(error.message, details=details))


class UserCreateForm(BootstrapFormMixin, _UserFormMixin, forms.Form):
    username = forms.CharField(
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        help_text="Letters, digits and @ . + - _ only.",
    )
    first_name = forms.CharField(max_length=150)
    last_name = forms.CharField(max_length=150)
    email = forms.EmailField(label="Email address", max_length=254, required=False)
    role = forms.ChoiceField(choices=User.Role.choices)
    password1 = forms.CharField(
        label="Initial password",
        strip=False,
        error_messages={"required": "Choose an initial password."},
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Repeat the password",
        strip=False,
        required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, organisation, **kwargs):
        super().__init__(*args, **kwargs)
        self._offer_roles(organisation)

    def service_arguments(self):
        """Keyword arguments for accounts.services.user_create."""
        data = self.cleaned_data
        return {
            "username": data["username"],
            "first_name": data["first_name"],
            "last_name": data["last_name"],
            "email": data["email"],
            "role": data["role"],
            "password": self.password(),
        }


class UserEditForm(BootstrapFormMixin, _UserFormMixin, forms.Form):
    first_name = forms.CharField(max_length=150)
    last_name = forms.CharField(max_length=150)
    email = forms.EmailField(label="Email address", max_length=254, required=False)
    role = forms.ChoiceField(choices=User.Role.choices)
    is_active = forms.BooleanField(
        label="Active (may sign in)",
        required=False,
        help_text="Deactivate instead of deleting: the audit trail keeps the user's name.",
    )
    password1 = forms.CharField(
        label="New password",
        strip=False,
        required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the current password.",
    )
    password2 = forms.CharField(
        label="Repeat the new password",
        strip=False,
        required=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args, user, editor, **kwargs):
        kwargs.setdefault(
            "initial",
            {
                "first_name": user.first_name,
                "last_name": user.last_name,
                "email": user.email,
                "role": user.role,
                "is_active": user.is_active,
            },
        )
        super().__init__(*args, **kwargs)
        self.user = user
        self._offer_roles(user.organisation, current=user.role)
        if user.pk == editor.pk:
            # Not offered rather than refused: the service refuses it anyway (no lock-out by mistake).
            self.fields["role"].disabled = True
            self.fields["is_active"].disabled = True
            self.fields["role"].help_text = "You cannot change your own role."

    def service_arguments(self):
        """Keyword arguments for accounts.services.user_update (unchanged values change nothing)."""
        data = self.cleaned_data
        return {
            "first_name": data["first_name"],
            "last_name": data["last_name"],
            "email": data["email"],
            "role": data["role"],
            "is_active": data["is_active"],
            "password": self.password(),
        }
