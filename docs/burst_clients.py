#!/usr/bin/env python3
"""Send a burst of clients at a running server with fewer descriptors than
clients, each sending its whole request the moment it connects, and count
those that got no answer.

This is the manual check behind the burst figures in docs/serving.md; the
automated version, at a small scale (64 descriptors, 150 clients), is the
black-box test
`descriptors::a_burst_of_clients_beyond_the_descriptor_limit_loses_no_request`.

    cargo build --release
    (ulimit -n 200; exec target/release/gotham_examples_handlers_simple_async_handlers 127.0.0.1:0) &
    # note the port it prints, then:
    python3 docs/burst_clients.py PORT 300 5

Every connection goes to 127.0.0.1.
"""

import asyncio
import sys

REQUEST = b"GET /sleep?seconds=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


async def one_client(port):
    """Connects, sends the request at once, reads until the server closes:
    True if the answer is the whole 200, False if the connection was reset
    or closed without it."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(REQUEST)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(-1), timeout=60)
        writer.close()
    except (OSError, asyncio.TimeoutError):
        return False
    return answer.startswith(b"HTTP/1.1 200 OK") and answer.endswith(b"slept for 1 seconds\n")


async def main():
    port, clients, rounds = (int(arg) for arg in sys.argv[1:4])
    lost_in_all = 0
    for round_ in range(1, rounds + 1):
        answers = await asyncio.gather(*(one_client(port) for _ in range(clients)))
        lost = answers.count(False)
        lost_in_all += lost
        print(f"round {round_}: {clients - lost} of {clients} answered, {lost} lost")
    print(f"in all: {lost_in_all} of {clients * rounds} lost")


if __name__ == "__main__":
    asyncio.run(main())
