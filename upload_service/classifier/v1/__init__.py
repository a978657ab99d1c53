"""Generated stubs of `classifier.proto` (package `classifier.v1`); do not edit.

Regenerate with `python -m upload_service.classifier.generate`.
"""
