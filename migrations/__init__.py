"""Alembic's environment and revisions; installed as the package `app.migrations`.

Alembic loads `env.py` and `versions/*.py` by path (`app.db.migrate.migrations_dir`), so this
package is never imported for its code: it exists so that the wheel carries the folder.
"""
