from django.urls import path, re_path
from drf_spectacular.views import SpectacularJSONAPIView

from . import api, views

app_name = "chat"

urlpatterns = [
    path("", views.room_list, name="room_list"),
    path("rooms/new/", views.room_create, name="room_create"),
    path("rooms/<str:slug>/", views.room_detail, name="room"),
    path("api/rooms/", api.RoomListView.as_view(), name="api_rooms"),
    path("api/rooms/<str:slug>/messages/", api.RoomMessagesView.as_view(), name="api_messages"),
    path("api/schema/", SpectacularJSONAPIView.as_view(), name="api_schema"),
    re_path(r"^api/(?P<path>.*)$", api.api_not_found),
]
