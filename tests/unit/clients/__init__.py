"""The client library (clients/): its parts that need no server."""
