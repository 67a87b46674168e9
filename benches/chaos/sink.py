"""The chaos run's target: HTTP/1.1 on 127.0.0.1:PORT, keep-alive. It refuses a tenth of the
requests with 503 and answers the others 200, and every second it writes to FILE how many
distinct events it answered 200 and how many 200s in all (a redelivery counts twice).

    python3 sink.py PORT FILE
"""
import asyncio
import random
import sys

PORT, FILE = int(sys.argv[1]), sys.argv[2]
answered = {}


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            path = lines[0].split()[1].decode()
            length = 0
            for line in lines[1:]:
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            if random.random() < 0.10:
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            else:
                n = path.rsplit("/", 1)[1]
                answered[n] = answered.get(n, 0) + 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


async def report():
    while True:
        await asyncio.sleep(1)
        with open(FILE, "w") as f:
            f.write(f"{len(answered)} {sum(answered.values())}\n")


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", PORT, backlog=1024)
    asyncio.create_task(report())
    async with server:
        await server.serve_forever()


asyncio.run(main())
