from django.urls import path

from chat.web import views

urlpatterns = [
    path("", views.room_list, name="room_list"),
    path("rooms/new/", views.room_create, name="room_create"),
    path("rooms/<str:slug>/", views.room_detail, name="room"),
    path("direct/new/", views.direct_new, name="direct_new"),
]
