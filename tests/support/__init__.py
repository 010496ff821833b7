"""What tests share: throwaway servers (Daphne, Redis, PostgreSQL, the cluster), socket and
browser clients, process helpers. Never imports a test module."""
