from django.contrib import admin
from django.urls import path

from tests.django.shop import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("orders/", views.create_order),
    path("orders/<int:pk>/", views.show_order),
    path("tasks/add/", views.enqueue_add),
    path("tasks/<str:result_id>/", views.show_task),
]
