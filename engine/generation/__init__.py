"""The generation service: vLLM's async engine behind a small FastAPI app (contracts.md, Engine)."""
