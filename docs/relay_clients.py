#!/usr/bin/env python3
"""Send many clients at once to the relay, and count what they get and how
many connections the upstream held at the most meanwhile.

This is the manual check behind the figures in docs/relay.md about the
relay's bound and its 503s; the automated versions, at a small scale, are
`several_at_once::the_upstream_never_has_more_of_the_relays_requests_than_its_turns`
and `several_at_once::out_of_descriptors_the_relay_answers_503_and_never_blames_the_upstream`.

    cargo build --release --bin gotham_examples_handlers_simple_async_handlers --example relay
    (ulimit -n 20000; exec target/release/gotham_examples_handlers_simple_async_handlers 127.0.0.1:17878) &
    (ulimit -n 20000; exec target/release/examples/relay 127.0.0.1:17879 127.0.0.1:17878) &
    (ulimit -n 20000; python3 docs/relay_clients.py 17879 UPSTREAM_PID 2000 2)

Lower the relay's limit (`ulimit -n 300`) to see it run out of descriptors.
The upstream's connections are read from /proc/PID/fd, so it runs on Linux
only. Every connection goes to 127.0.0.1.
"""

import asyncio
import collections
import os
import sys


async def one_client(port, seconds):
    """The status and the first line of the body, or why there is none."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /relay?seconds={seconds} HTTP/1.1\r\nHost: localhost\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(-1), timeout=120)
        writer.close()
    except (OSError, asyncio.TimeoutError) as error:
        return ("no answer", type(error).__name__)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1].decode() if head else "no answer"
    return (status, body.decode(errors="replace").split("\n", 1)[0])


def sockets_of(pid):
    """How many sockets process `pid` has open."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


async def main():
    port, upstream_pid, clients, seconds = (int(arg) for arg in sys.argv[1:5])
    at_rest = sockets_of(upstream_pid)
    most = at_rest
    done = False

    async def watch():
        nonlocal most
        while not done:
            most = max(most, sockets_of(upstream_pid))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    answers = await asyncio.gather(*(one_client(port, seconds) for _ in range(clients)))
    done = True
    await watcher
    print(f"{clients} clients on /relay?seconds={seconds}")
    for (status, line), count in collections.Counter(answers).most_common():
        print(f"  {count:5} x {status} {line}")
    print(f"upstream sockets: {at_rest} at rest, {most} at the most ({most - at_rest} more)")


if __name__ == "__main__":
    asyncio.run(main())
