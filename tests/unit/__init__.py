"""Unit tests: no database, no server."""
