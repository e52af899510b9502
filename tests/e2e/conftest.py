"""The browser fixtures of the page tests, for the end-to-end tests that drive the page."""

from tests.backend.page.conftest import browser, page  # noqa: F401
