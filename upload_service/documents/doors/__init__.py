"""The ways a document comes in; each owns its protocol and calls the one upload pipeline."""
