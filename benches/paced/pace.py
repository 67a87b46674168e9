"""Publishes RATE events/s over CONNS keep-alive connections for SECS seconds to
POST /events/bench.event on 127.0.0.1:PORT (the event of the wrk bench, a key of its own each),
each connection waiting for its 202 before its next event; prints how many were sent and the
202's p50 and p99.

    python3 pace.py PORT RATE CONNS SECS
"""
import asyncio
import os
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ left in the checkout
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "callgrind"))
from publish import post  # noqa: E402  (the event and its exchange, shared with callgrind's publisher)


async def publisher(port, c, per_conn, secs, start, latencies):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    while (due := start + i / per_conn) - start <= secs:
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        t0 = time.monotonic()
        await post(reader, writer, 10_000_000 * (c + 1) + i)
        latencies.append(time.monotonic() - t0)
        i += 1
    writer.close()


async def main(port, rate, conns, secs):
    latencies = []
    start = time.monotonic() + 0.2
    await asyncio.gather(*(publisher(port, c, rate / conns, secs, start, latencies) for c in range(conns)))
    latencies.sort()
    p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
    print("sent %d p50 %.1f ms p99 %.1f ms" % (len(latencies), 1000 * p50, 1000 * p99))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
