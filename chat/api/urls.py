from django.urls import path, re_path
from drf_spectacular.views import SpectacularJSONAPIView

from chat.api import views

urlpatterns = [
    path("api/rooms/", views.RoomListView.as_view(), name="api_rooms"),
    path("api/rooms/<str:slug>/messages/", views.RoomMessagesView.as_view(), name="api_messages"),
    path("api/schema/", SpectacularJSONAPIView.as_view(), name="api_schema"),
    re_path(r"^api/(?P<path>.*)$", views.api_not_found),
]
