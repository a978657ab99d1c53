"""The edge: who may call (token verification) and how often (rate limits and their counters)."""
