"""Pure ASGI middleware, one concern a module; `stack.py` lists them in execution order."""
