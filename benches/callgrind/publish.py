"""Publishes N events of the wrk bench's shape (298 bytes, record key n) to
POST /events/bench.event over CONNS keep-alive connections at once, each waiting for its 202.

    python3 publish.py PORT N CONNS

`event` and `post` are shared with benches/paced/pace.py.
"""
import asyncio
import json
import sys


def event(k):
    return json.dumps({
        "n": k, "permit_id": "P-%08d" % k, "status": "approved",
        "applicant": {"name": "Jane Ranger", "email": "jane.ranger@example.gov"},
        "location": {"lat": 44.4280, "lon": -110.5885, "parcel": "YNP-0042-17"},
        "fee_cents": 12500, "updated_at": "2026-11-30T12:00:00Z", "notes": "routine renewal",
    }).encode()


async def post(reader, writer, k):
    """Sends event k on a keep-alive connection and reads its answer, which must be a 202."""
    body = event(k)
    writer.write(b"POST /events/bench.event HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    status = await reader.readline()
    if b" 202 " not in status:
        sys.exit(f"event {k}: {status!r}")
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    await reader.readexactly(length)


async def publisher(port, keys):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for k in keys:
        await post(reader, writer, k)
    writer.close()


async def main(port, n, conns):
    await asyncio.gather(*(publisher(port, range(c, n, conns)) for c in range(conns)))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
