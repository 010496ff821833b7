"""The app's URLs, under the `chat` namespace: the pages and the HTTP API."""

from chat.api.urls import urlpatterns as api_urlpatterns
from chat.web.urls import urlpatterns as web_urlpatterns

app_name = "chat"

urlpatterns = [*web_urlpatterns, *api_urlpatterns]
