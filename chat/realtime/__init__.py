"""The WebSocket transport: the wire protocol, the consumer, fan-out, presence, limits and the
handshake's checks. It calls the domain (chat.services, chat.selectors); the domain reaches it
only through chat.events."""
