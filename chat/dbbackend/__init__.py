"""Django's PostgreSQL backend, with a pool that fails fast while PostgreSQL is down (base.py)."""
