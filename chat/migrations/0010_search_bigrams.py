"""Search's index for 2-character queries on PostgreSQL (chat.search, docs/search.md): the
function chat_bigrams(text), a text's 2-character substrings, and a GIN index on
chat_bigrams(UPPER(body)), built CONCURRENTLY (so the migration is not atomic). pg_trgm's index
(0009_search) stays for 3 characters or more. Nothing on SQLite, where 2 characters scan.

Reversible: going back drops the index and the function.
"""

from django.db import migrations

from chat import search


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        search.postgres_bigrams_install(schema_editor.connection)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        search.postgres_bigrams_uninstall(schema_editor.connection)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [("chat", "0009_search")]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
