"""The injection playground: an OpenAI-compatible proxy to the MAX servers."""
