"""App tests: Django in-process with a test database (and a throwaway redis-server for a few)."""
