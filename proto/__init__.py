"""The contract between the daemon and its clients (dermis.v1) and the thin client built on it."""
