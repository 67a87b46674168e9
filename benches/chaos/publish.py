"""Publishes events n = LO..HI-1 (or the n listed in FILE) to POST /events/chaos.t on
127.0.0.1:PORT, each with Idempotency-Key ev-n, from 32 keep-alive connections; prints the
n of every event not answered 202 (the service was killed, say), to be published again.

    python3 publish.py PORT LO HI
    python3 publish.py PORT --from FILE
"""
import asyncio
import sys

PORT = int(sys.argv[1])
if sys.argv[2] == "--from":
    todo = [int(n) for n in open(sys.argv[3]).read().split()]
else:
    todo = list(range(int(sys.argv[2]), int(sys.argv[3])))
unanswered = []


async def publisher():
    reader = writer = None
    while todo:
        n = todo.pop()
        body = ('{"n": %d, "status": "approved", "notes": "chaos"}' % n).encode()
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", PORT), 2)
            writer.write(b"POST /events/chaos.t HTTP/1.1\r\nHost: chaos\r\nIdempotency-Key: ev-%d\r\n"
                         b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (n, len(body)) + body)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            if head.split(b" ")[1] != b"202":
                unanswered.append(n)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            unanswered.append(n)
            writer = None
            await asyncio.sleep(0.05)


async def main():
    await asyncio.gather(*[publisher() for _ in range(32)])
    print(" ".join(map(str, unanswered)))


asyncio.run(main())
