//! The real third-party SCIM server (PyPI scim2-server) for tests.
