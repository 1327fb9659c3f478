from django.contrib import admin
from django.urls import path
from greetings import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("greet/", views.greet),
    path("jobs/<str:job_id>/", views.show_job),
    path("shout/", views.shout),
    path("tasks/<str:result_id>/", views.show_task),
]
