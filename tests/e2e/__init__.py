"""End-to-end tests: real Daphne workers, Redis, PostgreSQL, nginx and Chromium over real sockets."""
