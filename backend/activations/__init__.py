"""The /playground/activations product API."""
