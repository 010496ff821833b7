from django.urls import path, re_path
from drf_spectacular.views import SpectacularJSONAPIView

from chat.api import people, views

urlpatterns = [
    path("api/rooms/", views.RoomListView.as_view(), name="api_rooms"),
    path("api/rooms/<str:slug>/messages/", views.RoomMessagesView.as_view(), name="api_messages"),
    path("api/rooms/<str:slug>/messages/<int:message_id>/replies/", views.ThreadView.as_view(), name="api_thread"),
    path(
        "api/rooms/<str:slug>/messages/<int:message_id>/reactions/",
        views.ReactionsView.as_view(),
        name="api_reactions",
    ),
    path("api/direct/", views.DirectView.as_view(), name="api_direct"),
    path("api/users/", people.UserLookupView.as_view(), name="api_users"),
    path("api/schema/", SpectacularJSONAPIView.as_view(), name="api_schema"),
    re_path(r"^api/(?P<path>.*)$", views.api_not_found),
]
