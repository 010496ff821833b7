from django.urls import path

from chat.web import files, views

urlpatterns = [
    path("", views.room_list, name="room_list"),
    path("rooms/new/", views.room_create, name="room_create"),
    path("rooms/<str:slug>/", views.room_detail, name="room"),
    path("direct/new/", views.direct_new, name="direct_new"),
    # Uploaded files (chat.files.FILES_PREFIX), for those who may read their room.
    path("files/<int:upload_id>/thumbnail/", files.thumbnail, name="file_thumbnail"),
    path("files/<int:upload_id>/<path:name>", files.download, name="file"),
]
