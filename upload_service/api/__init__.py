"""HTTP routes, one resource a module; thin: parse, call one service, return a schema."""
