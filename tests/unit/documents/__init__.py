"""Specifications of the pure upload building blocks: multipart, sniffing, filenames."""
