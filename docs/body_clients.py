#!/usr/bin/env python3
"""Load a running body lesson (`cargo run --example body`) by hand: the
manual checks behind the figures in docs/body.md.

    cargo build --release --example body
    (ulimit -n 4096; exec target/release/examples/body 127.0.0.1:0) &
    # note the port it prints and the process id, then one of:
    python3 docs/body_clients.py uploads PORT PID 100 64 1
        # 100 clients at once each upload 64 MiB to /digest?pause_ms=1;
        # prints the time taken and the server's peak resident memory
    python3 docs/body_clients.py waiting PORT PID 1000
        # 1,000 `/digest` requests whose clients stop after one body
        # byte, then 1,000 `POST /sleep` requests asleep: the server's
        # resident memory for each

    (ulimit -n 256; exec target/release/examples/body 127.0.0.1:0) &
    python3 docs/body_clients.py slow PORT 400
        # 400 connections each send a `/digest` body a byte a second,
        # reconnecting when closed; how long an honest client waits

Run the client with a descriptor limit above its connection count
(`ulimit -n 4096`). Every connection goes to 127.0.0.1.
"""

import socket
import sys
import threading
import time

BLOCK = b"x" * (1 << 20)


def resident_kib(pid, field):
    """A memory figure of the process, from /proc/PID/status, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def read_answer(sock):
    answer = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return answer
        answer += chunk


def upload(port, mib, pause_ms, answers, index):
    with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
        head = (
            f"POST /digest?pause_ms={pause_ms} HTTP/1.1\r\nHost: localhost\r\n"
            f"Connection: close\r\nContent-Length: {mib << 20}\r\n\r\n"
        )
        sock.sendall(head.encode())
        for _ in range(mib):
            sock.sendall(BLOCK)
        answers[index] = read_answer(sock)


def uploads(port, pid, clients, mib, pause_ms):
    answers = [b""] * clients
    before = resident_kib(pid, "VmRSS")
    began = time.monotonic()
    threads = [
        threading.Thread(target=upload, args=(port, mib, pause_ms, answers, i))
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - began
    good = sum(answer.startswith(b"HTTP/1.1 200") for answer in answers)
    print(f"{clients} uploads of {mib} MiB to /digest?pause_ms={pause_ms}: {good} answered 200")
    print(f"took {took:.1f} s; server resident before {before / 1024:.1f} MiB, "
          f"peak {resident_kib(pid, 'VmHWM') / 1024:.1f} MiB")


def waiting(port, pid, count):
    held = []
    base = resident_kib(pid, "VmRSS")
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /digest HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nx")
        held.append(sock)
    time.sleep(2)
    digest = resident_kib(pid, "VmRSS")
    for sock in held:
        sock.close()
    held.clear()
    time.sleep(2)
    base_again = resident_kib(pid, "VmRSS")
    body = b'{"seconds": 3600}'
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            b"POST /sleep HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        held.append(sock)
    time.sleep(2)
    sleep = resident_kib(pid, "VmRSS")
    print(f"{count} waiting /digest requests: {(digest - base) / count:.1f} KiB each "
          f"(resident {base / 1024:.1f} -> {digest / 1024:.1f} MiB)")
    print(f"{count} waiting POST /sleep requests: {(sleep - base_again) / count:.1f} KiB each "
          f"(resident {base_again / 1024:.1f} -> {sleep / 1024:.1f} MiB)")
    for sock in held:
        sock.close()


def is_closed(sock):
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


def trickler(port, stop, closed_counts, index):
    """A body a byte a second, made again each time the server closes it."""
    while not stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /digest HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n")
            while not stop.is_set():
                sock.sendall(b"x")
                time.sleep(1)
                if is_closed(sock):
                    break
        except OSError:
            pass
        closed_counts[index] += 1
        try:
            sock.close()
        except (OSError, UnboundLocalError):
            pass


def honest_request(port):
    body = b'{"seconds": 0}'
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(
            b"POST /sleep HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        )
        answer = read_answer(sock)
    if not answer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"not a 200: {answer[:60]!r}")
    return time.monotonic() - began


def slow(port, connections):
    stop = threading.Event()
    closed_counts = [0] * connections
    threads = [
        threading.Thread(target=trickler, args=(port, stop, closed_counts, i), daemon=True)
        for i in range(connections)
    ]
    for thread in threads:
        thread.start()
    time.sleep(3)
    waits = []
    for _ in range(20):
        waits.append(honest_request(port))
        time.sleep(0.5)
    stop.set()
    print(f"{connections} slow-body connections, made again {sum(closed_counts)} times")
    print("honest client answered after: " + ", ".join(f"{wait:.2f} s" for wait in waits))
    print(f"longest: {max(waits):.2f} s")


def main():
    mode, args = sys.argv[1], [int(arg) for arg in sys.argv[2:]]
    {"uploads": uploads, "waiting": waiting, "slow": slow}[mode](*args)


if __name__ == "__main__":
    main()
