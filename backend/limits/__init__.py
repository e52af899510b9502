"""Per-client rate and concurrency limits and the deployment's GPU ceiling, shared through
Postgres by every backend process."""
