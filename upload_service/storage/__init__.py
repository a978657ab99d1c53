"""Object storage adapters: a protocol and its local-file and S3 implementations."""
