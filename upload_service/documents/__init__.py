"""Documents: the streaming upload pipeline and the rules a stored document obeys."""
