"""The SQL store: typed models, engine/session factories, and Alembic migrations."""
