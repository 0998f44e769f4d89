#!/usr/bin/env python3
"""Restart the example under load, as `systemctl restart` does, and count
the requests that got no answer.

This is the manual check behind the restart figures in docs/serving.md;
the automated version, at a smaller scale, is tests/restart/main.rs.

    cargo build --release
    python3 docs/restart_clients.py own      # the example binds its own socket
    python3 docs/restart_clients.py handed   # this script holds it, as systemd does
    python3 docs/restart_clients.py silent   # accepted, silent, then SIGTERM

`own` and `handed`: a new client every 5 ms (200 a second) for 8 s, each on
a new connection with `GET /sleep?seconds=1`; after 3 s the example gets
SIGTERM, and a new one is started as soon as it has exited. With `handed`,
this script plays the service manager: it holds the listening socket and
gives it to each process at descriptor 3 (LISTEN_FDS=1, LISTEN_PID).

`silent`: 200 connections that send nothing, then SIGTERM, then a request
on each; five rounds.

Every connection goes to 127.0.0.1.
"""

import asyncio
import os
import signal
import socket
import sys
import time

BINARY = "target/release/gotham_examples_handlers_simple_async_handlers"
REQUEST = b"GET /sleep?seconds=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
LISTENING = b"Listening for requests at http://"


async def start(manager_socket, port):
    """Starts the example, on the manager's socket or on `port` (0: any);
    returns the process and the port it says it listens on."""
    if manager_socket is not None:
        fd = manager_socket.fileno()
        # The shell moves the socket to descriptor 3 and names itself in
        # LISTEN_PID, then becomes the example.
        script = 'exec 3<&"$1"; LISTEN_FDS=1 LISTEN_PID=$$ exec "$0"'
        process = await asyncio.create_subprocess_exec(
            "sh", "-c", script, BINARY, str(fd),
            pass_fds=(fd,), stdout=asyncio.subprocess.PIPE)
    else:
        process = await asyncio.create_subprocess_exec(
            BINARY, f"127.0.0.1:{port}", stdout=asyncio.subprocess.PIPE)
    line = await process.stdout.readline()
    if not line.startswith(LISTENING):
        sys.exit(f"the example said {line!r}")
    # Keep reading its stdout, so that it never blocks on a full pipe.
    asyncio.ensure_future(drain(process.stdout))
    return process, int(line.strip().rsplit(b":", 1)[1])


async def drain(stream):
    while await stream.readline():
        pass


async def one_client(port, go=None, connected=None):
    """Connects and sends the request (once `go` is done, if given); how it
    ended, in a word."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if connected is not None:
            connected.set_result(None)
            await go
        writer.write(REQUEST)
        await writer.drain()
        answer = await reader.read()
        writer.close()
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except OSError as error:
        return type(error).__name__
    if answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"slept for 1 seconds\n"):
        return "answered"
    return "closed unanswered" if not answer else "other answer"


def report(outcomes):
    counts = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    lost = len(outcomes) - counts.get("answered", 0)
    print(f"{len(outcomes)} requests, {lost} lost: {counts}")


async def restart_under_load(handed):
    manager_socket = None
    if handed:
        manager_socket = socket.socket()
        manager_socket.bind(("127.0.0.1", 0))
        manager_socket.listen(4096)
    process, port = await start(manager_socket, 0)
    clients = []
    began = time.monotonic()

    async def restart():
        await asyncio.sleep(3)
        stopped = time.monotonic()
        process.send_signal(signal.SIGTERM)
        await process.wait()
        new, _ = await start(manager_socket, port)
        print(f"SIGTERM to the new one listening: {time.monotonic() - stopped:.2f} s")
        return new

    restarting = asyncio.ensure_future(restart())
    for n in range(1600):
        await asyncio.sleep(max(0, began + n * 0.005 - time.monotonic()))
        clients.append(asyncio.ensure_future(one_client(port)))
    report(await asyncio.gather(*clients))
    new = await restarting
    new.send_signal(signal.SIGTERM)
    await new.wait()


async def silent_then_stop(rounds=5, count=200):
    outcomes = []
    for _ in range(rounds):
        process, port = await start(None, 0)
        go = asyncio.get_running_loop().create_future()
        connected = [asyncio.get_running_loop().create_future() for _ in range(count)]
        clients = [asyncio.ensure_future(one_client(port, go, c)) for c in connected]
        await asyncio.gather(*connected)
        # Long enough for the server to accept them all, short of a second.
        await asyncio.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        go.set_result(None)
        outcomes += await asyncio.gather(*clients)
        await process.wait()
    report(outcomes)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode in ("own", "handed"):
        asyncio.run(restart_under_load(mode == "handed"))
    elif mode == "silent":
        asyncio.run(silent_then_stop())
    else:
        sys.exit(__doc__)
