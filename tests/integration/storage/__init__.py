"""Integration tests of the storage adapters against real files and a real S3 endpoint."""
