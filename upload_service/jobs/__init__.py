"""Durable background jobs: the queue in the database, the worker that drains it, the handlers."""
