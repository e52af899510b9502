"""Shared bottom layer: the one error shape, the orjson response, the app factory, embedded
Postgres and child-service helpers, and the project's defaults. Imports nothing above it."""
