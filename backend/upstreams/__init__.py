"""HTTP clients for the services the backend calls."""
