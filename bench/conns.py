"""Opens N keep-alive connections, sends one request on each, keeps them open.

Prints "open N" once every connection has had its answer, then waits to be
killed. Used by bench/proxy.sh to measure memory per open connection.
"""

import asyncio
import sys


async def one(host, port, sem, conns):
    async with sem:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        conns.append((reader, writer))


async def main(host, port, n):
    sem = asyncio.Semaphore(500)
    conns = []
    await asyncio.gather(*(one(host, port, sem, conns) for _ in range(n)))
    print(f"open {len(conns)} connections to port {port}", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    asyncio.run(main(host, port, n))
