"""User management for lab admins: only the users of their own organisation, never others'.

The views are thin: look-ups come from accounts.selectors, every change (and its audit event) from
accounts.services, the same functions the API uses, so the screens and the API obey the same rules.
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services
from accounts.forms import UserCreateForm, UserEditForm, UserFilterForm
from accounts.models import User
from accounts.selectors import get_managed_user, users_managed_by
from core.errors import DomainError, NotAllowed
from core.permissions import administers_organisation, require_role
from security.two_factor import second_factor_reset

PAGE_SIZE = 25


@login_required
def user_list(request):
    require_role(administers_organisation(request.user), services.NOT_A_LAB_ADMIN)
    filters = UserFilterForm(request.GET)
    query = role = ""
    if filters.is_valid():  # else the whole list, as with no filter
        query, role = filters.cleaned_data["q"], filters.cleaned_data["role"]
    users = users_managed_by(request.user, search=query, role=role).order_by(
        "-is_active", "last_name", "first_name", "username"
    )
    page_obj = Paginator(users, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "accounts/user_list.html",
        {"page_obj": page_obj, "query": query, "roles": User.Role.choices, "current_role": role},
    )


@login_required
@require_http_methods(["GET", "POST"])
def user_create(request):
    require_role(administers_organisation(request.user), services.NOT_A_LAB_ADMIN)
    form = UserCreateForm(request.POST or None, organisation=request.user.organisation)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_create(admin=request.user, request=request, **form.service_arguments())
        except NotAllowed as error:
            raise PermissionDenied(error.message) from None
        except DomainError as error:
            form.show_domain_error(error)
        else:
            messages.success(request, f"User {user.username} created as {user.get_role_display().lower()}.")
            return redirect("user-list")
    return render(request, "accounts/user_form.html", {"form": form, "creating": True})


@login_required
@require_http_methods(["GET", "POST"])
def user_edit(request, pk):
    require_role(administers_organisation(request.user), services.NOT_A_LAB_ADMIN)
    managed = get_managed_user(request.user, pk)  # 404 for another organisation's users
    action = request.POST.get("action") if request.method == "POST" else None

    if action in ("deactivate", "reactivate"):
        active = action == "reactivate"
        try:
            services.user_set_active(admin=request.user, user=managed, is_active=active, request=request)
        except NotAllowed as error:
            raise PermissionDenied(error.message) from None
        except DomainError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, f"User {managed.username} {'reactivated' if active else 'deactivated'}.")
        if request.POST.get("next") == "edit":
            return redirect("user-edit", pk=managed.pk)
        return redirect("user-list")

    form = UserEditForm(request.POST or None, user=managed, editor=request.user)
    if request.method == "POST" and form.is_valid():
        if not form.has_changed():
            messages.info(request, "Nothing changed.")
            return redirect("user-list")
        try:
            user = services.user_update(admin=request.user, user=managed, request=request, **form.service_arguments())
        except NotAllowed as error:
            raise PermissionDenied(error.message) from None
        except DomainError as error:
            form.show_domain_error(error)
        else:
            messages.success(request, f"User {user.username} updated.")
            return redirect("user-list")
    return render(request, "accounts/user_form.html", {"form": form, "creating": False, "managed": managed})


@login_required
@require_POST
def user_reset_two_factor(request, pk):
    """A lab admin removes a user's second factor (lost phone); they set it up again at next sign-in."""
    require_role(administers_organisation(request.user), services.NOT_A_LAB_ADMIN)
    managed = get_managed_user(request.user, pk)  # 404 for other organisations' users
    if managed == request.user:
        raise PermissionDenied("Ask another lab admin or a superuser to reset your own second factor.")
    second_factor_reset(admin=request.user, user=managed, request=request)
    messages.success(request, f"Second factor of {managed.username} reset: they set it up again at their next sign-in.")
    return redirect("user-edit", pk=managed.pk)
