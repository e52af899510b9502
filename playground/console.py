"""What `playground up` tells the person at the terminal."""

from __future__ import annotations


def say(message: str) -> None:
    print(message, flush=True)
