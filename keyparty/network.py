"""Addresses: where phones on the local network reach this laptop."""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
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
