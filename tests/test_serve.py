"""`keyparty serve` as a host starts it: waitress over HTTP, and HTTPS for the
in-page scanner on phones."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(instance, *args):
    port = free_port()
    env = {**os.environ, "KEYPARTY_INSTANCE": str(instance)}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "keyparty",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, port


def fetch(url, context=None, tries=50):
    for _ in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                return response.status, response.headers, response.read().decode()
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing answered at {url}")


def stop(process) -> str:
    process.terminate()
    output, _ = process.communicate(timeout=10)
    return output


def test_serve_answers_and_prints_the_addresses(instance):
    process, port = serve(instance)
    try:
        status, headers, page = fetch(f"http://127.0.0.1:{port}/host/")
        assert status == 200 and "New event" in page
        assert headers["X-Content-Type-Options"] == "nosniff"
    finally:
        output = stop(process)
    assert f"http://localhost:{port}/host/" in output
    assert f"http://127.0.0.1:{port}/" in output


@pytest.mark.slow
def test_serve_over_https(instance, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ],
        capture_output=True,
    )
    if made.returncode != 0:
        pytest.skip("openssl is needed to make a test certificate")
    process, port = serve(instance, "--tls-cert", str(cert), "--tls-key", str(key))
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    try:
        status, headers, page = fetch(f"https://127.0.0.1:{port}/", context=context)
        assert status == 200 and "keyparty" in page
        status, headers, _ = fetch(f"https://127.0.0.1:{port}/lang/ja", context=context)
    finally:
        output = stop(process)
    assert f"https://localhost:{port}/host/" in output


def test_https_needs_both_files(instance, tmp_path):
    (tmp_path / "cert.pem").write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "keyparty", "serve", "--tls-cert", str(tmp_path / "cert.pem")],
        env={**os.environ, "KEYPARTY_INSTANCE": str(instance)},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "--tls-key" in result.stderr
