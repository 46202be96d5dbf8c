from django.urls import path

from security import views

urlpatterns = [
    path("security/", views.account_security, name="account-security"),
    path("password/change/", views.password_change_view, name="password-change"),
    path("two-factor/setup/", views.two_factor_setup, name="two-factor-setup"),
    path("two-factor/verify/", views.two_factor_verify, name="two-factor-verify"),
]
