"""The readable local demo: SmolLM2-135M-Instruct from a PyPI wheel, and a TopK SAE trained
here on its residual stream, with labels and max-activating examples per feature."""
