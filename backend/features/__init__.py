"""The /playground/features SAE proxy."""
