"""Document events: the outbox written with each change, wake-ups, and the client's stream."""
