"""Upload Service: stream documents to storage, record them, classify them durably."""

__version__ = "0.1.0"
