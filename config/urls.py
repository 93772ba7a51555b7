from django.contrib import admin
from django.urls import path

from chat import admin_login, views
from files import views as file_views

urlpatterns = [
    path("", views.index, name="index"),
    path("rooms/<str:join_key>/", views.index, name="room"),
    path("files/<str:file_id>", file_views.download, name="file"),
    path("healthz", views.healthz, name="healthz"),  # answered by views.HealthzFirst
    # Django's admin login, with its password checks bounded per address and per process.
    path("admin/login/", admin_login.login),
    path("admin/", admin.site.urls),
]
