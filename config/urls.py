from django.contrib import admin
from django.urls import path

from chat import views

urlpatterns = [
    path("", views.index, name="index"),
    path("rooms/<str:join_key>/", views.index, name="room"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
