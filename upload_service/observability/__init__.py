"""What an operator sees: log lines and their request context, metrics, timestamps, readiness."""
