"""The HTTP API (Django REST framework) for scripts and bots: views, serializers, authentication."""
