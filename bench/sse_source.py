"""The SSE event source behind the backend's /sse (stdlib asyncio only).

``GET /sse?n=N&ms=M`` answers ``text/event-stream`` and sends N events, one
every M milliseconds on a fixed schedule, each ``data: <CLOCK_MONOTONIC ns>``
so that the client (same machine, same clock) can compute delivery latency;
then ``event: end``.  Run as ``python3 bench/sse_source.py --port PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from urllib.parse import parse_qs, urlsplit

HEAD = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"X-Accel-Buffering: no\r\nConnection: close\r\n\r\n")


def stream_parameters(request_line: bytes) -> tuple[int, float]:
    """(events, interval in seconds) from the request line's query (defaults 100, 50 ms)."""
    parts = request_line.decode("latin-1").split(" ")
    query = parse_qs(urlsplit(parts[1] if len(parts) > 1 else "/").query)
    events = int(query.get("n", ["100"])[0])
    interval_ms = float(query.get("ms", ["50"])[0])
    return events, interval_ms / 1000.0


async def serve_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        events, interval = stream_parameters(head.split(b"\r\n", 1)[0])
        writer.write(HEAD)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(events):
            writer.write(b"data: %d\n\n" % time.monotonic_ns())
            await writer.drain()
            # a fixed schedule: a late event does not push the next ones back
            await asyncio.sleep(max(0.0, start + (i + 1) * interval - loop.time()))
        writer.write(b"event: end\ndata: 0\n\n")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def serve(port: int) -> None:
    server = await asyncio.start_server(serve_stream, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
