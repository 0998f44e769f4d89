#!/usr/bin/env python3
"""Trickle request heads into a running server from many connections at
once (a slowloris attack), reconnecting the moment the server closes one,
and time how soon an honest client is answered meanwhile.

This is the manual check behind the slowloris figure in docs/serving.md.
With the server allowed fewer descriptors than the attack has connections,
the serve loop must close some of them to accept the honest client: a
connection whose head is still arriving a second after its first byte
counts as idle, so the attackers are the ones closed.

    cargo build --release
    (ulimit -n 256; exec target/release/gotham_examples_handlers_simple_async_handlers 127.0.0.1:0) &
    # note the port it prints, then:
    python3 docs/slowloris_clients.py PORT 400

Every connection goes to 127.0.0.1.
"""

import socket
import sys
import threading
import time

HEAD_START = b"GET /sleep?seconds=0 HTTP/1.1\r\nHost: localhost\r\n"
# One byte of a header that never ends, sent this often.
TRICKLE_EVERY = 0.5


def is_closed(sock):
    """Whether the server has closed or reset `sock`, without waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def attacker(port, stop, closed_counts, index):
    """One slowloris connection, made again each time the server closes it."""
    while not stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(HEAD_START)
            while not stop.is_set():
                time.sleep(TRICKLE_EVERY)
                if is_closed(sock):
                    break
                sock.sendall(b"x")
        except OSError:
            pass
        closed_counts[index] += 1
        try:
            sock.close()
        except (OSError, UnboundLocalError):
            pass


def honest_request(port):
    """Seconds from connecting to a whole answer of `/sleep?seconds=0`."""
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(HEAD_START + b"Connection: close\r\n\r\n")
        answer = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    if not answer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"not a 200: {answer[:60]!r}")
    return time.monotonic() - began


def main():
    port, attackers = int(sys.argv[1]), int(sys.argv[2])
    stop = threading.Event()
    closed_counts = [0] * attackers
    threads = [
        threading.Thread(target=attacker, args=(port, stop, closed_counts, i), daemon=True)
        for i in range(attackers)
    ]
    for thread in threads:
        thread.start()
    # Long enough for every attacker to connect and be a second old.
    time.sleep(3)
    waits = []
    for _ in range(10):
        waits.append(honest_request(port))
        time.sleep(0.5)
    stop.set()
    print(f"{attackers} slowloris connections, made again {sum(closed_counts)} times")
    print("honest client answered after: " + ", ".join(f"{wait:.2f} s" for wait in waits))
    print(f"longest: {max(waits):.2f} s")


if __name__ == "__main__":
    main()
