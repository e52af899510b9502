"""Shared plumbing for the activations playground services (CLI, errors, embedded Postgres)."""
