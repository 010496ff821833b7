"""Clients of the chat: the terminal client and the library under it (`python -m clients.terminal`)."""
