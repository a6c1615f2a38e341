"""Suite-wide: pytest's own ``pytester`` fixture, for tests that run a pytest session of their own."""

pytest_plugins = ["pytester"]
