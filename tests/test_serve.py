"""`keyparty serve` as a host starts it: gunicorn's threaded workers over HTTP,
HTTPS for the in-page scanner on phones, and clients that hold connections
open without sending (idle, slow) cannot stop it."""

from __future__ import annotations

import http.client
import io
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from tests.conftest import on_postgres


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


def fetch(url, context=None, seconds=60):
    """GET `url`, waiting up to `seconds` for a server that is still starting
    (migrations and the home check run first; a loaded CI machine is slow)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5, context=context) as response:
                return response.status, response.headers, response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing answered at {url}") from None
            time.sleep(0.1)


def get_from(source: str, port: int, path: str = "/", timeout: float = 5) -> tuple[int, float]:
    """GET over plain HTTP from a loopback address of our choice; (status, seconds)."""
    started = time.monotonic()
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=timeout, source_address=(source, 0)
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        connection.close()


def open_idle(source: str, port: int, count: int) -> list[socket.socket]:
    """`count` TCP connections from `source` that never send a byte."""
    held = []
    for _ in range(count):
        s = socket.socket()
        s.bind((source, 0))
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
        except ConnectionResetError:
            s.close()
            continue  # the server reset it before connect() returned
        held.append(s)
    return held


def is_closed_by_server(s: socket.socket, within: float) -> bool:
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def stop(process) -> str:
    process.terminate()
    output, _ = process.communicate(timeout=30)
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
        # Connections that never start their TLS handshake hold up no one.
        idle = open_idle("127.0.0.14", port, 40)
        # One try, within urlopen's 5 s: a blocked server would not answer.
        status, headers, page = fetch(f"https://127.0.0.1:{port}/", context=context, seconds=0)
        assert status == 200
        for s in idle:
            s.close()
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
        connection.request("GET", "/lang/ja")
        cookie = connection.getresponse().getheader("Set-Cookie")
        connection.close()
        assert "Secure" in cookie and "HttpOnly" in cookie
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


def test_an_idle_connection_blocks_no_one(instance):
    process, port = serve(instance, "--threads", "2")
    try:
        fetch(f"http://127.0.0.1:{port}/")
        # More silent connections than threads, from two addresses.
        idle = open_idle("127.0.0.5", port, 3) + open_idle("127.0.0.6", port, 3)
        status, seconds = get_from("127.0.0.7", port)
        assert status == 200 and seconds < 2, seconds
        for s in idle:
            s.close()
    finally:
        stop(process)


def test_many_connections_from_one_address_do_not_lock_out_another(instance):
    process, port = serve(instance, "--per-address", "8")
    try:
        fetch(f"http://127.0.0.1:{port}/")
        idle = open_idle("127.0.0.9", port, 300)
        time.sleep(0.5)
        # The server kept 8 of them and reset the rest at once.
        idle = [s for s in idle if not is_closed_by_server(s, 0.05)]
        assert len(idle) == 8
        for n in range(5):
            status, seconds = get_from("127.0.0.10", port)
            assert status == 200 and seconds < 2, (n, seconds)
        # Beyond its share the address gets nothing more, while it holds them.
        with pytest.raises(OSError):
            get_from("127.0.0.9", port)
        for s in idle:
            s.close()
        time.sleep(0.5)
        # Its connections closed, the address is served again.
        assert get_from("127.0.0.9", port)[0] == 200
    finally:
        stop(process)


def test_a_client_that_stops_in_the_middle_of_a_request_is_cut_off(instance):
    process, port = serve(instance, "--read-timeout", "1", "--threads", "1")
    try:
        fetch(f"http://127.0.0.1:{port}/")
        slow = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.11", 0))
        # Headers begun, then silence: the one thread reads this request...
        slow.sendall(b"POST /e/x/register HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Len")
        started = time.monotonic()
        assert is_closed_by_server(slow, 8), "the server waited for ever"
        assert time.monotonic() - started < 4
        # ...and the thread is free for others.
        assert get_from("127.0.0.12", port)[0] == 200
        slow.close()
    finally:
        stop(process)


def test_several_worker_processes(instance):
    process, port = serve(instance, "--workers", "2")
    try:
        fetch(f"http://127.0.0.1:{port}/")
        # The first worker may answer while the second is still starting.
        deadline = time.monotonic() + 60
        while True:
            workers = subprocess.run(
                ["pgrep", "-P", str(process.pid)], capture_output=True, text=True
            ).stdout.split()
            if len(workers) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(workers) == 2, workers
        statuses = [get_from("127.0.0.1", port)[0] for _ in range(20)]
        assert statuses == [200] * 20
    finally:
        output = stop(process)
    assert "2 process(es)" in output


def test_a_client_that_dribbles_its_headers_is_cut_off(instance):
    process, port = serve(instance, "--read-timeout", "1", "--threads", "1")
    try:
        fetch(f"http://127.0.0.1:{port}/")
        slow = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.15", 0))
        started = time.monotonic()
        cut = False
        # A byte every half second: each read succeeds, the whole never ends.
        for byte in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                cut = True
                break
            if is_closed_by_server(slow, 0.5):
                cut = True
                break
        assert cut and time.monotonic() - started < 6, time.monotonic() - started
        assert get_from("127.0.0.16", port)[0] == 200
        slow.close()
    finally:
        stop(process)


def test_a_request_waiting_for_a_free_thread_is_answered_past_the_header_deadline(instance):
    # One thread, a header deadline of 2 s. A client sends its body slowly (a
    # byte every half second: each read succeeds) and holds the thread for
    # about 4 s; a phone's GET waits for the thread meanwhile, longer than
    # the header deadline, and must be answered, not cut off (a busy server
    # is no slow client).
    process, port = serve(instance, "--read-timeout", "1", "--threads", "1")
    try:
        fetch(f"http://127.0.0.1:{port}/")
        body = b"csrf_token=" + b"a" * 8
        slow = socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.17", 0))
        slow.sendall(
            b"POST /join/not-a-token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        time.sleep(0.3)  # the slow client has the thread

        def send_slowly():
            for byte in body:
                slow.sendall(bytes([byte]))
                time.sleep(0.5)

        sender = threading.Thread(target=send_slowly)
        sender.start()
        status, seconds = get_from("127.0.0.18", port, timeout=30)
        sender.join()
        slow.close()
        assert status == 200
        assert seconds > 2.5, f"it waited for the thread ({seconds:.1f} s)"
    finally:
        stop(process)


def test_the_server_log_keeps_no_token():
    """Whatever gunicorn logs (a malformed request line is logged whole)."""
    import logging

    from keyparty.serving import _Redact

    logger = logging.getLogger("keyparty.test.redact")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.addFilter(_Redact())
    logger.warning("Invalid Request Line '%s'", "GET /join/SECRET123 x y")
    logger.warning("Error handling request /confirm/SECRET456?a=1")
    logger.warning("header Authorization: Bearer SECRET789")
    logged = stream.getvalue()
    assert "SECRET" not in logged
    assert "/join/… x y" in logged and "/confirm/…?a=1" in logged and "Bearer …" in logged


def test_each_worker_keeps_one_database_connection_per_thread(instance, monkeypatch):
    # `keyparty serve --threads N` tells its workers N (KEYPARTY_THREADS): a
    # pool smaller than the threads would leave requests waiting for a
    # connection, and failing after the pool's timeout.
    from keyparty import create_app
    from keyparty.extensions import db

    for threads, expected in (("48", 48), (None, 32)):
        if threads:
            monkeypatch.setenv("KEYPARTY_THREADS", threads)
        else:
            monkeypatch.delenv("KEYPARTY_THREADS", raising=False)
        app = create_app()
        with app.app_context():
            assert db.engine.pool.size() == expected
            db.engine.dispose()


@pytest.mark.skipif(not on_postgres(), reason="PostgreSQL's connection limit")
def test_serve_warns_when_postgresql_takes_fewer_connections_than_the_workers_may_open(
    instance,
):
    # tests/pg.sh's cluster takes 300 connections (3 reserved): 2 x (200 + 8) do not fit.
    process, port = serve(instance, "--workers", "2", "--threads", "200")
    try:
        assert fetch(f"http://127.0.0.1:{port}/")[0] == 200
    finally:
        output = stop(process)
    assert "PostgreSQL takes 297 connections" in output
    assert "may open 416. Raise max_connections to at least 419" in output
    process, port = serve(instance, "--workers", "2")
    try:
        assert fetch(f"http://127.0.0.1:{port}/")[0] == 200
    finally:
        output = stop(process)
    assert "max_connections" not in output
