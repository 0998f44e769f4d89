#!/usr/bin/env python3
"""Hold many idle connections to a running server, then see how soon a new
client is answered and how much CPU the server used meanwhile.

This is the manual check behind the figures in docs/serving.md; the
automated version, at a small scale (64 descriptors), is the black-box test
`descriptors::out_of_descriptors_idle_connections_give_way_to_a_new_client_and_requests_in_flight_stay`.

    cargo build --release
    (ulimit -n 20000; exec target/release/gotham_examples_handlers_simple_async_handlers 127.0.0.1:0) &
    # note the port it prints, then, in a shell that may open as many files:
    (ulimit -n 20000; python3 docs/idle_clients.py PORT $! 19980)

It reads the server's CPU time from /proc/PID/stat, so it runs on Linux only.
Every connection goes to 127.0.0.1.
"""

import socket
import sys
import time


def cpu_seconds(pid):
    """User + system CPU time of process `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the command name, which may hold spaces: utime and
        # stime are the 12th and 13th of them.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0


def main():
    port, pid, count = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    idle = []
    started, cpu_at_start = time.time(), cpu_seconds(pid)
    for i in range(count):
        try:
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError as error:
            print(f"connection {i} failed: {error}")
            break
    opened, cpu_when_opened = time.time(), cpu_seconds(pid)
    print(
        f"opened {len(idle)} idle connections in {opened - started:.1f} s; "
        f"server CPU {cpu_when_opened - cpu_at_start:.2f} s meanwhile"
    )

    client = socket.create_connection(("127.0.0.1", port), timeout=120)
    client.sendall(b"GET /sleep?seconds=0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    status_line = client.recv(4096).split(b"\r\n", 1)[0].decode()
    answered = time.time()
    print(
        f"a new client got {status_line!r} after {answered - opened:.1f} s; "
        f"server CPU {cpu_seconds(pid) - cpu_when_opened:.2f} s over that time"
    )


if __name__ == "__main__":
    main()
