"""The one upload pipeline every door calls: checks on the stream, the recording, the clean-up.

A door (the multipart body, a tus upload, a direct upload to S3) owns only its protocol: it feeds
the bytes through `checks`, stores them, and hands the stored object to `recording`, which
records it or leaves nothing behind with `cleanup`.
"""
