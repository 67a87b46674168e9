"""Publishes RATE events/s over CONNS keep-alive connections for SECS seconds to
POST /events/bench.event on 127.0.0.1:PORT (the event of the wrk bench, a key of its own each),
each connection waiting for its 202 before its next event; prints how many were sent and the
202's p50 and p99.

    python3 pace.py PORT RATE CONNS SECS
"""
import asyncio, json, sys, time
port, rate, conns, secs = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
lat = []


def event(k):
    return json.dumps({"n": k, "permit_id": "P-%08d" % k, "status": "approved",
        "applicant": {"name": "Jane Ranger", "email": "jane.ranger@example.gov"},
        "location": {"lat": 44.4280, "lon": -110.5885, "parcel": "YNP-0042-17"},
        "fee_cents": 12500, "updated_at": "2026-11-30T12:00:00Z", "notes": "routine renewal"}).encode()


async def publisher(c, start):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    per = rate / conns; i = 0
    while True:
        due = start + i / per
        now = time.monotonic()
        if due - start > secs: break
        if due > now: await asyncio.sleep(due - now)
        k = 10_000_000 * (c + 1) + i; body = event(k); t0 = time.monotonic()
        w.write(b"POST /events/bench.event HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await w.drain()
        status = await r.readline()
        if b" 202 " not in status:
            sys.exit(f"event {k}: {status!r}")
        n = 0
        while (l := await r.readline()) not in (b"\r\n", b""):
            if l.lower().startswith(b"content-length:"): n = int(l.split(b":")[1])
        await r.readexactly(n); lat.append(time.monotonic() - t0); i += 1
    w.close()


async def main():
    start = time.monotonic() + 0.2
    await asyncio.gather(*(publisher(c, start) for c in range(conns)))


asyncio.run(main())
lat.sort(); print("sent", len(lat), "p50 %.1f ms p99 %.1f ms" % (1000*lat[len(lat)//2], 1000*lat[int(len(lat)*0.99)]))
