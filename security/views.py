"""Portal pages of the second factor: enrolment, verification at sign-in, recovery codes, reset."""

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_http_methods

from audit.models import AuditEvent
from core.next_url import local_next_url
from security import two_factor
from security.audit import security_event
from security.forms import CodeForm
from security.passwords import must_change_password, password_change
from security.policy import requires_second_factor


def _next_url(request):
    return local_next_url(request, request.POST.get("next") or request.GET.get("next")) or reverse("home")


def _with_next(view_name, request):
    return f"{reverse(view_name)}?{urlencode({'next': _next_url(request)})}"


@login_required
@require_http_methods(["GET", "POST"])
def two_factor_setup(request):
    """Enrol an authenticator app: scan the QR code (or type the key), confirm with a code."""
    user = request.user
    if two_factor.has_second_factor(user) and not request.user.is_verified():
        return redirect(_with_next("two-factor-verify", request))
    if two_factor.has_second_factor(user) and request.method == "GET" and "again" not in request.GET:
        return redirect("account-security")
    device = two_factor.totp_enrolment_device(user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        codes = two_factor.totp_enrolment_confirm(request, user, device, form.cleaned_data["code"])
        if codes is not None:
            return render(
                request, "security/recovery_codes.html", {"codes": codes, "next": _next_url(request), "enrolled": True}
            )
        form.add_error("code", "That code is not right. Check the app shows Telediag and type the current code.")
    return render(
        request,
        "security/two_factor_setup.html",
        {
            "form": form,
            "qr_code": two_factor.qr_code_data_uri(device),
            "secret": two_factor.secret_text(device),
            "required": requires_second_factor(user),
            "next": _next_url(request),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def two_factor_verify(request):
    """The second step of signing in: a code from the app, or one recovery code."""
    user = request.user
    if request.user.is_verified():
        return redirect(_next_url(request))
    if not two_factor.has_second_factor(user):
        return redirect(_with_next("two-factor-setup", request))
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = two_factor.second_factor_verify(user, form.cleaned_data["code"])
        if device is not None:
            two_factor.second_factor_login(request, user, device)
            return redirect(_next_url(request))
        security_event(AuditEvent.Action.LOGIN_FAILED, user=user, request=request, step="second_factor")
        form.add_error("code", "That code is not right, or was already used. Wait for the next code and try again.")
    return render(request, "security/two_factor_verify.html", {"form": form, "next": _next_url(request)})


@login_required
@require_http_methods(["GET", "POST"])
def account_security(request):
    """The user's own security page: second factor, recovery codes, password."""
    user = request.user
    if request.method == "POST" and request.POST.get("action") == "new-recovery-codes":
        if not (two_factor.has_second_factor(user) and user.is_verified()):
            raise PermissionDenied("Sign in with your second factor first.")
        codes = two_factor.recovery_codes_replace(user)
        security_event(AuditEvent.Action.TWO_FACTOR_ENROLLED, user=user, request=request, device="recovery_codes")
        return render(request, "security/recovery_codes.html", {"codes": codes, "next": reverse("account-security")})
    return render(
        request,
        "security/account_security.html",
        {
            "has_second_factor": two_factor.has_second_factor(user),
            "required": requires_second_factor(user),
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def password_change_view(request):
    """Change one's own password: the current one, then the new one twice (the password rules apply)."""
    forced = must_change_password(request.user)
    form = PasswordChangeForm(request.user, request.POST or None)
    for field in form.fields.values():
        field.widget.attrs.setdefault("class", "form-control")
    if request.method == "POST" and form.is_valid():
        password_change(user=request.user, new_password=form.cleaned_data["new_password1"], request=request)
        update_session_auth_hash(request, request.user)  # stay signed in (and keep the second factor)
        messages.success(request, "Your password has been changed.")
        return redirect(_next_url(request) if forced else "account-security")
    return render(
        request, "security/password_change.html", {"form": form, "forced": forced, "next": _next_url(request)}
    )
