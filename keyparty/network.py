"""Addresses: where phones on the local network reach this laptop."""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
import time
from urllib.parse import unquote
from urllib.parse import urlsplit

from flask import current_app

SIOCGIFADDR = 0x8915


def lan_addresses() -> list[str]:
    """IPv4 addresses of this machine's interfaces, loopback excluded.

    Read from the interfaces themselves: nothing is sent anywhere.
    """
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            request = struct.pack("256s", name.encode()[:15])
            try:
                answer = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, request)
            except OSError:
                continue  # interface without an IPv4 address
            address = socket.inet_ntoa(answer[20:24])
            if not ipaddress.ip_address(address).is_loopback and address not in found:
                found.append(address)
    return found


def is_loopback(address: str | None) -> bool:
    """127.0.0.0/8, ::1 or the name localhost (brackets and zone ids allowed)."""
    host = (address or "").strip().strip("[]").split("%")[0].lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def public_base_url(request_host_url: str | None = None, port: int = 8000) -> str:
    """The base URL printed into QR codes and join links.

    KEYPARTY_PUBLIC_URL wins; otherwise the address the request came to,
    unless that is the laptop's own loopback, which no phone can reach.
    """
    configured = current_app.config.get("PUBLIC_URL")
    if configured:
        return configured.rstrip("/")
    if request_host_url:
        url = urlsplit(request_host_url)
        if not is_loopback(url.hostname):
            return request_host_url.rstrip("/")
        port = url.port or port
    addresses = lan_addresses()
    return f"http://{addresses[0] if addresses else 'localhost'}:{port}"


class TrustedHosts:
    """The names this server answers to (Flask's TRUSTED_HOSTS): localhost, the
    laptop's LAN addresses (looked up again every few seconds: Wi-Fi changes),
    the host of KEYPARTY_PUBLIC_URL, and KEYPARTY_TRUSTED_HOSTS.

    Any other Host header is refused with 400: a web page that a DNS
    rebinding trick points at the laptop cannot drive keyparty's pages.
    """

    LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")

    def __init__(self, public_url: str | None, extra: str | None) -> None:
        self.fixed = list(self.LOOPBACK)
        if public_url and urlsplit(public_url).hostname:
            self.fixed.append(urlsplit(public_url).hostname)
        self.fixed += [h.strip() for h in (extra or "").split(",") if h.strip()]
        self._lan: list[str] = []
        self._lan_at = 0.0

    def __iter__(self):
        if time.monotonic() - self._lan_at > 5:
            self._lan, self._lan_at = lan_addresses(), time.monotonic()
        return iter(self.fixed + self._lan)

    def __len__(self) -> int:
        return len(list(iter(self)))

    def __contains__(self, name: object) -> bool:
        return name in list(iter(self))


def local_path(target: str | None, default: str = "/") -> str:
    """`target` if it is a path on this server, else `default` (no open redirect).

    Refused: anything with a scheme or host (`https:evil`, `//evil`), a
    backslash (browsers read `/\\evil` as `//evil`), and control characters
    or spaces (browsers drop a tab: `/%09/evil` becomes `//evil`).
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return default
    for text in (target, unquote(target)):
        if (
            text.startswith("//")
            or "\\" in text
            or any(ord(c) < 0x21 or ord(c) == 0x7F for c in text)
        ):
            return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target
