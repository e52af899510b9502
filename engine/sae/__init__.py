"""SAE service: per-token SAE features at a residual layer of a served model."""
