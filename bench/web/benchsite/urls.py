from benchapp import views
from django.urls import path

urlpatterns = [
    path("insert/", views.insert),
    path("enqueue/", views.enqueue_view),
]
