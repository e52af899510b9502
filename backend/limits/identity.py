"""Who a request is, for the limits: the address the platform really provides, keyed so that
one client cannot pass for many.

Where the address comes from (docs/security.md, "Client identity"):

- ``peer`` (default): the ASGI scope's ``client``. On Modal's ``@modal.asgi_app`` (how the
  backend is deployed) that is the client's own address: Modal's runtime removes any
  ``X-Forwarded-For`` a client sends before the app sees the request, so a header setting would
  read nothing there (modal-labs/modal-client, ``modal/_runtime/asgi.py``). Locally, uvicorn
  rewrites ``client`` from ``X-Forwarded-For`` only when ``PLAYGROUND_FORWARDED_ALLOW_IPS`` is
  set (backend/cli.py); it is off by default, so a local client cannot pick its key either.
- a trusted proxy header (``PLAYGROUND_CLIENT_IP_HEADER``), only behind a proxy that sets it:
  its ``first`` address for Modal's ``@modal.web_server`` (Modal puts the client's address in
  front of the list), its ``last`` for a proxy that appends (nginx ``$proxy_add_x_forwarded_for``).

Keys: an IPv4 address as it is; an IPv6 address by its network prefix (``/64`` unless
``PLAYGROUND_IPV6_PREFIX`` says otherwise), because one subscriber is routinely given a whole
/64 and could otherwise rotate through 2**64 keys. Anything that is not an address is kept as
text (bounded), so a misconfigured header still keys on something stable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

MAX_KEY_CHARS = 100


def address_key(text: str, ipv6_prefix: int = 64) -> str:
    """The limits' key for one address: IPv4 as is, IPv6 as its ``/ipv6_prefix`` network."""
    text = text.strip()
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return text[:MAX_KEY_CHARS] or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d is an IPv4 client
            return str(address.ipv4_mapped)
        network = ipaddress.IPv6Network((address, ipv6_prefix), strict=False)
        return str(network)
    return str(address)


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """How this deployment names its clients (one per process, from the settings)."""

    header: bytes | None = None
    pick: Literal["first", "last"] = "last"
    ipv6_prefix: int = 64

    def key(self, scope) -> str:
        if self.header is not None:
            found = self._from_header(scope.get("headers", ()))
            if found:
                return address_key(found, self.ipv6_prefix)
        client = scope.get("client")
        return address_key(client[0], self.ipv6_prefix) if client else "unknown"

    def _from_header(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """The configured header's first or last address; several headers of that name read
        as one list, in order."""
        addresses: list[str] = []
        for name, value in headers:
            if name.lower() == self.header:
                addresses += [a.strip() for a in value.decode("latin-1").split(",")]
        addresses = [a for a in addresses if a]
        if not addresses:
            return None
        return addresses[0] if self.pick == "first" else addresses[-1]
