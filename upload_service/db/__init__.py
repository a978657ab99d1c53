"""Database adapter: ORM models and the engine/session factory."""
