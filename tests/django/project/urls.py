from django.contrib import admin
from django.urls import include, path

from jobworker.contrib.django.dashboard import dashboard_urls
from tests.django.shop import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("ops/jobs/", include(dashboard_urls(actions=True))),
    path("ops/readonly/", include(dashboard_urls())),
    path("orders/", views.create_order),
    path("orders/<int:pk>/", views.show_order),
    path("tasks/add/", views.enqueue_add),
    path("tasks/<str:result_id>/", views.show_task),
]
