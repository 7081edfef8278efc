"""Running on a server: behind a TLS reverse proxy (KEYPARTY_PROXY_HOPS), and the
warning when `keyparty serve` would answer the Internet over plain HTTP."""

from __future__ import annotations

from keyparty import create_app
from keyparty.network import exposure_warning
from tests.conftest import challenge_on
from tests.conftest import decrypt_with
from tests.conftest import key_bytes
from tests.conftest import secret_home
from tests.conftest import stop_agent


def proxied_app(hops: int):
    return create_app(
        {
            "TESTING": True,
            "WTF_CSRF_ENABLED": False,
            "PUBLIC_URL": None,
            "PROXY_HOPS": hops,
            "TRUSTED_HOSTS_EXTRA": "keyparty.example.org",
        }
    )


# What a proxy on the same machine sends: the connection comes from loopback.
FROM_THE_PROXY = {"REMOTE_ADDR": "127.0.0.1"}
FORWARDED = {
    "X-Forwarded-For": "198.51.100.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "keyparty.example.org",
}


def test_behind_a_proxy_the_host_pages_see_the_real_client(instance):
    trusting = proxied_app(1).test_client()
    page = trusting.get("/host/", headers=FORWARDED, environ_base=FROM_THE_PROXY)
    assert page.status_code == 403, "198.51.100.7 is not the laptop"
    # Without the setting every request through the proxy looks local: that
    # is why the README says to set it (and a host password).
    naive = proxied_app(0).test_client()
    assert naive.get("/host/", environ_base=FROM_THE_PROXY).status_code == 200


def test_behind_a_proxy_links_use_the_public_https_address(instance):
    client = proxied_app(1).test_client()
    event = client.post("/host/events", data={"name": "Proxy Party"}, environ_base=FROM_THE_PROXY)
    assert event.status_code in (302, 303)
    registered = client.post(
        "/e/proxy-party/register",
        data={"name": "Alice", "key_text": key_bytes("alice").decode()},
        headers=FORWARDED,
        environ_base=FROM_THE_PROXY,
    )
    # O2: the join link comes inside the challenge encrypted to the key.
    prove = client.get(registered.location, headers=FORWARDED, environ_base=FROM_THE_PROXY)
    home = secret_home("alice")
    try:
        letter = decrypt_with(home, challenge_on(prove.text))
    finally:
        stop_agent(home)
    assert "https://keyparty.example.org/join/" in letter


def test_plain_http_beyond_the_local_network_is_warned():
    lan = ["192.168.1.10", "10.0.0.5", "fe80::1%eth0"]
    assert exposure_warning("0.0.0.0", False, lan) is None
    assert exposure_warning("127.0.0.1", False) is None
    warning = exposure_warning("0.0.0.0", False, [*lan, "8.8.4.4"])
    assert "8.8.4.4" in warning and "192.168.1.10" not in warning
    assert "--tls-cert" in warning and "KEYPARTY_PROXY_HOPS" in warning
    assert exposure_warning("0.0.0.0", True, ["8.8.4.4"]) is None, "HTTPS: nothing to warn"
    assert "2001:4860::8888" in exposure_warning("2001:4860::8888", False)
