"""Unit tests of the storage adapters."""
