from django.urls import path

from workspace import views

urlpatterns = [
    path("review/", views.review_queue, name="review-queue"),
    path("cases/<int:pk>/assign/", views.case_assign, name="case-assign"),
]
