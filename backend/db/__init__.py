"""Postgres access: the pool, the named queries, the migrations driver."""
