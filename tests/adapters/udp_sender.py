"""A second process for the UDP burst test: sends COUNT proxy user events (extended
layout, one session each) to HOST:PORT as fast as the kernel takes them, then prints
how many were sent."""

import socket
import sys
import time


def datagram(i: int) -> bytes:
    return (f"/qseow-proxy-session/;qs-node1;Start session;CORP;fin_user{i % 500};"
            f"https://qs.corp.example;hub;Start session for user 'CORP\\fin_user{i % 500}';"
            f"ProxySessionId=burst-{i:06d};Timestamp=2026-11-01T09:00:00.000Z").encode()


def main() -> int:
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    for i in range(count):
        data = datagram(i)
        for _ in range(1000):
            try:
                sock.sendto(data, (host, port))
                sent += 1
                break
            except BlockingIOError:  # the send queue is full: try this one again
                time.sleep(0.0001)
    sys.stdout.write(f"{sent}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
