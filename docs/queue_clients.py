#!/usr/bin/env python3
"""Send a burst of clients at a running server all at once, each asking
`/sleep?seconds=1` the moment it connects, and tell how long each waited for
the first byte of its answer beyond its sleep: a client whose connect found
the listen queue full waits a second more for its SYN to be sent again.

This is the manual check behind the listen-queue figures in
docs/serving.md; the automated version is the black-box test
`burst::a_burst_of_two_thousand_clients_is_answered_with_none_waiting_a_second_more`.

    cargo build --release
    (ulimit -Sn 1024; exec target/release/gotham_examples_handlers_simple_async_handlers 127.0.0.1:0) &
    # note the port it prints, then:
    python3 docs/queue_clients.py PORT 2000 3

The server starts with a soft limit of 1,024 descriptors, as most systems
give a process, and raises it to the hard one. This script raises its own
soft limit too (it needs a descriptor per client), and times each client
from the moment it starts to connect: a dropped final ACK looks connected
to the client, so the connect alone would not show the wait.
"""

import errno
import resource
import selectors
import socket
import sys
import time

REQUEST = b"GET /sleep?seconds=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
SLEEP = 1.0


def one_round(port, clients):
    """Starts every connect at once (non-blocking sockets, one system call
    each: a burst as fast as the kernel takes it), sends each request once
    its connection is made, and reads every answer. Returns, for each
    client, the seconds from starting to connect to the answer's first
    byte, less the sleep; None if the answer was not the whole 200."""
    selector = selectors.DefaultSelector()
    began, first_byte, answers = {}, {}, {}
    for _ in range(clients):
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.setblocking(False)
        began[client] = time.monotonic()
        if client.connect_ex(("127.0.0.1", port)) not in (0, errno.EINPROGRESS):
            client.close()
            continue
        answers[client] = b""
        selector.register(client, selectors.EVENT_WRITE)
    open_ = len(answers)
    deadline = time.monotonic() + 60
    while open_ and time.monotonic() < deadline:
        for key, events in selector.select(timeout=1):
            client = key.fileobj
            if events & selectors.EVENT_WRITE:
                if client.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    client.send(REQUEST)
                    selector.modify(client, selectors.EVENT_READ)
                    continue
                chunk = b""
            else:
                try:
                    chunk = client.recv(4096)
                except OSError:
                    chunk = b""
            if chunk and client not in first_byte:
                first_byte[client] = time.monotonic() - began[client]
            answers[client] += chunk
            if not chunk:
                selector.unregister(client)
                client.close()
                open_ -= 1
    results = []
    for client, answer in answers.items():
        whole = answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"slept for 1 seconds\n")
        results.append(first_byte[client] - SLEEP if whole else None)
    results += [None] * (clients - len(answers))
    return results


def at(sorted_values, quantile):
    return sorted_values[int((len(sorted_values) - 1) * quantile)]


def main():
    port, clients, rounds = (int(arg) for arg in sys.argv[1:4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for round_ in range(1, rounds + 1):
        results = one_round(port, clients)
        over = sorted(result for result in results if result is not None)
        lost = clients - len(over)
        waited = sum(1 for result in over if result >= 1.0)
        if over:
            print(
                f"round {round_}: {len(over)} of {clients} answered; over the sleep: "
                f"p50 {at(over, 0.5) * 1000:.0f} ms, p99 {at(over, 0.99) * 1000:.0f} ms, "
                f"max {over[-1] * 1000:.0f} ms; {waited} waited a second or more"
                + (f"; {lost} lost" if lost else "")
            )
        else:
            print(f"round {round_}: none of {clients} answered")
        time.sleep(2)


if __name__ == "__main__":
    main()
