from django.apps import AppConfig


class ChatConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        from django.core import checks

        from chat import receivers, search
        from chat.web import devices

        receivers.connect()
        devices.connect()
        checks.register(search.check_locale, checks.Tags.database)
