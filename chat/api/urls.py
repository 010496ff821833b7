from django.urls import path, re_path
from drf_spectacular.views import SpectacularJSONAPIView

from chat.api import downloads, files, manage, people, presence, search, unread, views

urlpatterns = [
    path("api/rooms/", views.RoomListView.as_view(), name="api_rooms"),
    path("api/rooms/<str:slug>/messages/", views.RoomMessagesView.as_view(), name="api_messages"),
    path("api/rooms/<str:slug>/messages/<int:message_id>/replies/", views.ThreadView.as_view(), name="api_thread"),
    path(
        "api/rooms/<str:slug>/messages/<int:message_id>/reactions/",
        views.ReactionsView.as_view(),
        name="api_reactions",
    ),
    path("api/rooms/<str:slug>/uploads/", files.upload_door, name="api_uploads"),
    path("api/rooms/<str:slug>/", manage.RoomDetailView.as_view(), name="api_room"),
    path("api/rooms/<str:slug>/members/", manage.MembersView.as_view(), name="api_members"),
    path("api/rooms/<str:slug>/online/", presence.OnlineView.as_view(), name="api_online"),
    path("api/rooms/<str:slug>/members/<str:username>/", manage.MemberView.as_view(), name="api_member"),
    path("api/rooms/<str:slug>/messages/<int:message_id>/", manage.MessageView.as_view(), name="api_message"),
    path("api/direct/", views.DirectView.as_view(), name="api_direct"),
    path("api/unread/", unread.UnreadView.as_view(), name="api_unread"),
    path("api/rooms/<str:slug>/notify/", unread.NotifyView.as_view(), name="api_notify"),
    path("api/users/", people.UserLookupView.as_view(), name="api_users"),
    path("api/search/", search.SearchView.as_view(), name="api_search"),
    path("api/schema/", SpectacularJSONAPIView.as_view(), name="api_schema"),
    # Uploaded files (chat.files.FILES_PREFIX), for those who may read their room: not under
    # /api/, as pages and <img> elements use them too.
    path("files/<int:upload_id>/thumbnail/", downloads.ThumbnailView.as_view(), name="file_thumbnail"),
    path("files/<int:upload_id>/<path:name>", downloads.FileDownloadView.as_view(), name="file"),
    re_path(r"^api/(?P<path>.*)$", views.api_not_found),
]
