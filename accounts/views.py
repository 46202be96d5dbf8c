"""User management for lab admins: only the users of their own organisation, never others'."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.forms import UserCreateForm, UserEditForm
from accounts.models import User
from cases.audit import audit
from cases.models import AuditEvent

PAGE_SIZE = 25


def _require_lab_admin(user):
    if not user.is_lab_admin:
        raise PermissionDenied("Only lab admins manage users.")


def users_managed_by(admin):
    """The users a lab admin may see and change: their organisation's, superusers excluded."""
    if not admin.is_authenticated or not admin.is_lab_admin:
        return User.objects.none()
    return User.objects.filter(organisation_id=admin.organisation_id, is_superuser=False)


def _get_managed_user(admin, pk):
    try:
        return users_managed_by(admin).get(pk=pk)
    except (User.DoesNotExist, ValueError, TypeError):
        raise Http404("No such user.") from None


@login_required
def user_list(request):
    _require_lab_admin(request.user)
    users = users_managed_by(request.user).order_by("-is_active", "last_name", "first_name", "username")
    query = request.GET.get("q", "").strip()[:120]
    for term in query.split():
        users = users.filter(
            Q(username__icontains=term) | Q(first_name__icontains=term)
            | Q(last_name__icontains=term) | Q(email__icontains=term)
        )
    role = request.GET.get("role", "")
    if role in User.Role.values:
        users = users.filter(role=role)
    else:
        role = ""
    page_obj = Paginator(users, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "accounts/user_list.html",
        {"page_obj": page_obj, "query": query, "roles": User.Role.choices, "current_role": role},
    )


@login_required
@require_http_methods(["GET", "POST"])
def user_create(request):
    _require_lab_admin(request.user)
    form = UserCreateForm(request.POST or None, organisation=request.user.organisation)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        audit(
            AuditEvent.Action.CREATED, actor=request.user, request=request,
            object="user", user_id=user.pk, username=user.username, role=user.role,
        )
        messages.success(request, f"User {user.username} created as {user.get_role_display().lower()}.")
        return redirect("user-list")
    return render(request, "accounts/user_form.html", {"form": form, "creating": True})


@login_required
@require_http_methods(["GET", "POST"])
def user_edit(request, pk):
    _require_lab_admin(request.user)
    managed = _get_managed_user(request.user, pk)  # 404 for another organisation's users
    action = request.POST.get("action") if request.method == "POST" else None

    if action in ("deactivate", "reactivate"):
        if managed.pk == request.user.pk:
            messages.error(request, "You cannot deactivate your own account.")
            return redirect("user-list")
        active = action == "reactivate"
        if managed.is_active != active:
            managed.is_active = active
            managed.save(update_fields=["is_active"])
            audit(
                AuditEvent.Action.CHANGED, actor=request.user, request=request,
                object="user", user_id=managed.pk, username=managed.username, changes={"is_active": active},
            )
        messages.success(request, f"User {managed.username} {'reactivated' if active else 'deactivated'}.")
        if request.POST.get("next") == "edit":
            return redirect("user-edit", pk=managed.pk)
        return redirect("user-list")

    before = {"role": managed.role, "is_active": managed.is_active}
    form = UserEditForm(request.POST or None, instance=managed, editor=request.user)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        changes = {field: getattr(user, field) for field in form.changed_data if field not in ("password1", "password2")}
        if form.cleaned_data.get("password1"):
            changes["password"] = "reset"
        if changes:
            audit(
                AuditEvent.Action.CHANGED, actor=request.user, request=request,
                object="user", user_id=user.pk, username=user.username, changes=changes,
                previous={k: v for k, v in before.items() if k in changes},
            )
            messages.success(request, f"User {user.username} updated.")
        else:
            messages.info(request, "Nothing changed.")
        return redirect("user-list")
    return render(request, "accounts/user_form.html", {"form": form, "creating": False, "managed": managed})
