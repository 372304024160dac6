"""A ClusterIP Service played on the host for the emulation (k8s_emulator.py): the
proxy that kube-proxy's rules amount to, one TCP connection to a Ready pod each."""

import select
import socket
import threading


class ServiceProxy:
    """A ClusterIP Service: accepts on (address, port) and forwards each connection to
    the target port of one Ready pod, as kube-proxy does. Connections already made
    stay with their pod when it stops being Ready."""

    def __init__(self, address, port, backends):
        self.backends = backends  # callable: [(ip, port)] of Ready endpoints
        self.listener = socket.create_server((address, port), reuse_port=False)
        self.listener.settimeout(0.2)
        self.stopping = False
        self.next = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except (socket.timeout, OSError):
                continue
            endpoints = self.backends()
            if not endpoints:
                conn.close()  # no Ready endpoint: refused, as with no iptables rule
                continue
            self.next += 1
            target = endpoints[self.next % len(endpoints)]
            threading.Thread(target=self._pipe, args=(conn, target), daemon=True).start()

    def _pipe(self, conn, target):
        try:
            upstream = socket.create_connection(target, timeout=2)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        pair = {conn: upstream, upstream: conn}
        try:
            while not self.stopping:
                readable, _, _ = select.select(list(pair), [], [], 0.5)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    pair[sock].sendall(data)
        except OSError:
            pass
        finally:
            conn.close()
            upstream.close()

    def stop(self):
        self.stopping = True
        self.listener.close()
        self.thread.join(timeout=2)
