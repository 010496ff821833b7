"""Message search's index (chat.search, docs/search.md), made by the database's vendor:

- PostgreSQL: the pg_trgm extension and a GIN trigram index on UPPER(body), built CONCURRENTLY
  (so the migration is not atomic: sends go on while a large table is indexed).
- SQLite: an FTS5 table with the trigram tokenizer on chat_message's body, and the triggers that
  keep it (filled from the messages already stored).

Reversible: going back drops the index (PostgreSQL keeps the extension) or the table and triggers.
"""

from django.db import migrations, transaction

from chat import search


def forwards(apps, schema_editor):
    db = schema_editor.connection
    if db.vendor == "postgresql":
        search.postgres_install(db)
    elif db.vendor == "sqlite":
        with transaction.atomic(using=db.alias):
            search.sqlite_install(db)


def backwards(apps, schema_editor):
    db = schema_editor.connection
    if db.vendor == "postgresql":
        search.postgres_uninstall(db)
    elif db.vendor == "sqlite":
        with transaction.atomic(using=db.alias):
            search.sqlite_uninstall(db)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("chat", "0008_files"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
