"""`playground export RUN_ID [--format json|csv]`: a stored run from a running backend, written
to a file or stdout as it streams (the same download as GET .../{request_id}/export)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import quote

DEFAULT_URL = "http://127.0.0.1:{port}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("request_id", metavar="RUN_ID", help="the run's request_id")
    parser.add_argument("--format", choices=["json", "csv"], default="json")
    parser.add_argument(
        "--url",
        default=None,
        help="the backend's base URL (default: $PLAYGROUND_URL, else "
        "http://127.0.0.1:$PLAYGROUND_PORT, port 8000)",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="write here (default: stdout; '.' for the server's file name in this folder)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per read (60)")


def _base_url(args: argparse.Namespace) -> str:
    url = args.url or os.environ.get("PLAYGROUND_URL")
    return (url or DEFAULT_URL.format(port=os.environ.get("PLAYGROUND_PORT", "8000"))).rstrip("/")


def _file_name(disposition: str | None, fallback: str) -> str:
    if disposition and 'filename="' in disposition:
        return disposition.split('filename="', 1)[1].split('"', 1)[0] or fallback
    return fallback


def main(args: argparse.Namespace) -> int:
    import httpx

    url = f"{_base_url(args)}/playground/activations/{quote(args.request_id, safe='')}/export"
    try:
        with (
            httpx.Client(timeout=args.timeout) as client,
            client.stream("GET", url, params={"format": args.format}) as response,
        ):
            if response.status_code != 200:
                response.read()
                try:
                    message = response.json()["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    message = response.text[:300]
                print(f"export failed ({response.status_code}): {message}", file=sys.stderr)
                return 1
            output = args.output
            if output is not None and output.is_dir():
                name = _file_name(
                    response.headers.get("content-disposition"), f"export.{args.format}"
                )
                output = output / name
            if output is None:
                for chunk in response.iter_bytes():
                    sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                return 0
            partial = output.with_name(output.name + ".partial")
            try:
                with partial.open("wb") as file:
                    for chunk in response.iter_bytes():
                        file.write(chunk)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            partial.replace(output)  # nothing half-written under the asked name
            print(f"wrote {output}", file=sys.stderr)
            return 0
    except httpx.HTTPError as exc:
        print(f"export failed: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
