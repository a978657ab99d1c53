"""Root of the test bench: the fixture plugins every test may use."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.s3",
    "tests.fixtures.classifier",
    "tests.fixtures.app",
    "tests.fixtures.jwks",
    "tests.fixtures.redis_db",
    "tests.fixtures.webhook",
]
