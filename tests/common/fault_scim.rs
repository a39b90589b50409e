//! A fault-injecting SCIM 2.0 test server (filled in by the fault-server work).
