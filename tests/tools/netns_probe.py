#!/usr/bin/env python3
"""Echo server and probes of netns_faults_test.sh: real sockets between namespaces.

  netns_probe.py serve TCP_PORT UDP_PORT SECONDS
      echoes TCP lines and UDP datagrams on every address, for SECONDS at most
  netns_probe.py tcp HOST PORT TIMEOUT
      connects, sends a line and reads its echo; prints the echo's round trip in ms;
      exits 1 when any step takes more than TIMEOUT seconds
  netns_probe.py udp HOST PORT COUNT SECONDS
      sends COUNT numbered datagrams 1 ms apart and collects their echoes for SECONDS;
      prints "received N in_order 0|1 first_ms MS"
"""
import os
import socket
import socketserver
import sys
import threading
import time


class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)
            self.wfile.flush()


def serve(tcp_port, udp_port, seconds):
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.daemon_threads = True
    tcp = socketserver.ThreadingTCPServer(("0.0.0.0", tcp_port), Echo)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("0.0.0.0", udp_port))

    def echo_udp():
        while True:
            data, sender = udp.recvfrom(2048)
            udp.sendto(data, sender)

    threading.Thread(target=echo_udp, daemon=True).start()
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    time.sleep(seconds)
    os._exit(0)


def tcp_probe(host, port, timeout):
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            start = time.monotonic()
            s.sendall(b"ping\n")
            echo = b""
            while not echo.endswith(b"\n"):
                chunk = s.recv(64)
                if not chunk:
                    return 1
                echo += chunk
            print(f"{(time.monotonic() - start) * 1000:.1f}")
            return 0 if echo == b"ping\n" else 1
    except OSError as error:
        print(f"tcp {host}:{port}: {error}", file=sys.stderr)
        return 1


def udp_probe(host, port, count, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((host, port))
    s.settimeout(0.001)
    received = []
    first_ms = -1.0
    start = time.monotonic()

    def collect():
        nonlocal first_ms
        try:
            while True:
                received.append(int(s.recv(64)))
                if first_ms < 0:
                    first_ms = (time.monotonic() - start) * 1000
        except (socket.timeout, ConnectionRefusedError):
            pass

    for number in range(count):
        s.send(str(number).encode())
        collect()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(received) < count:
        collect()
    in_order = int(received == sorted(received))
    print(f"received {len(received)} in_order {in_order} first_ms {first_ms:.1f}")
    return 0


def main(argv):
    command = argv[1] if len(argv) > 1 else ""
    if command == "serve" and len(argv) == 5:
        serve(int(argv[2]), int(argv[3]), float(argv[4]))
    elif command == "tcp" and len(argv) == 5:
        return tcp_probe(argv[2], int(argv[3]), float(argv[4]))
    elif command == "udp" and len(argv) == 6:
        return udp_probe(argv[2], int(argv[3]), int(argv[4]), float(argv[5]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
