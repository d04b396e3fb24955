#!/usr/bin/env python3
"""Hold many idle client connections open to a proxy, for the memory case.

Driven over stdin/stdout by the orchestrator:
  prints  CONNECTED <ok> <failed>   once every connection is open (no request sent)
  reads   REQUEST                   then sends one GET on each and reads the answer
  prints  REQUESTED <ok> <failed>   the connections stay open, idle, keep-alive
  reads   QUIT (or end of input)    closes every connection with a reset (no TIME_WAIT)
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import struct
import sys


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def connect(port: int, gate: asyncio.Semaphore):
    async with gate:
        try:
            return await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), timeout=30
            )
        except (OSError, asyncio.TimeoutError):
            return None


async def one_request(reader, writer, path: str, gate: asyncio.Semaphore) -> bool:
    async with gate:
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await asyncio.wait_for(reader.readexactly(length), timeout=30)
            return head.startswith(b"HTTP/1.1 200")
        except (OSError, ValueError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            return False


async def command() -> str:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    return line.strip() or "QUIT"


def reset(writer) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        except OSError:
            pass
    writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--path", default="/hello")
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    raise_fd_limit()

    gate = asyncio.Semaphore(args.concurrency)
    opened = await asyncio.gather(*(connect(args.port, gate) for _ in range(args.count)))
    streams = [s for s in opened if s is not None]
    print(f"CONNECTED {len(streams)} {args.count - len(streams)}", flush=True)

    if await command() == "REQUEST":
        answers = await asyncio.gather(
            *(one_request(r, w, args.path, gate) for r, w in streams)
        )
        ok = sum(answers)
        print(f"REQUESTED {ok} {len(streams) - ok}", flush=True)
        await command()

    for _, writer in streams:
        reset(writer)
    await asyncio.sleep(0.1)


if __name__ == "__main__":
    asyncio.run(main())
