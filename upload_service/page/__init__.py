"""The web page's built assets (from `web/`, by `make web`), as the service serves them."""
