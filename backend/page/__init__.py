"""The /playground/activations page, served by the backend."""
