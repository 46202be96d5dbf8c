"""The project's URLs plus the inference API, until telediag/api_urls.py includes inference.api_urls."""
from django.urls import include, path

from telediag.urls import urlpatterns as project_urlpatterns

urlpatterns = [path("api/", include("inference.api_urls")), *project_urlpatterns]
