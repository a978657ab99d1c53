"""The process among its neighbours: memory handed back to the OS, SIGTERM noticed early."""
