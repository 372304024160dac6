#!/usr/bin/env python3
"""Tests of k8s_cert_manager.py, the emulation's cert-manager: from the prod rendering
(k8s/components/tls) it makes the four Secrets, whose certificates chain to the CA,
say what their Certificates ask (names, usages, CA or not, lifetime, key type) and
carry mutual TLS with host name checks; issuance follows dependencies whatever the
order of the objects; whatever it does not play raises Unsupported.

    k8s_cert_manager_test.py K8S_DIR   # exit 0 pass, 1 fail, 77 without kubectl/openssl
"""

import copy
import datetime
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import unittest

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import k8s_emulator  # noqa: E402
from k8s_cert_manager import CertManager, Unsupported  # noqa: E402
from k8s_emulator import find  # noqa: E402

K8S_DIR = None
SECRETS = ["stead-ca", "stead-peer-tls", "stead-root-client-tls", "stead-server-tls"]


def render(overlay):
    return k8s_emulator.render(os.path.join(K8S_DIR, overlay))


def x509(path, *args):
    return subprocess.run(["openssl", "x509", "-in", path, "-noout", *args], check=True,
                          capture_output=True, text=True).stdout


def handshake(server, client, server_hostname):
    """Mutual TLS over a socket pair: the server presents `server`'s Secret and requires
    a client certificate from its CA, the client presents `client`'s and checks the
    server's names `server_hostname`. The client's view of the server's certificate;
    raises ssl.SSLError if either side refuses."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(os.path.join(server, "tls.crt"), os.path.join(server, "tls.key"))
    server_context.load_verify_locations(os.path.join(server, "ca.crt"))
    server_context.verify_mode = ssl.CERT_REQUIRED
    client_context = ssl.create_default_context(cafile=os.path.join(client, "ca.crt"))
    client_context.load_cert_chain(os.path.join(client, "tls.crt"), os.path.join(client, "tls.key"))
    left, right = socket.socketpair()
    left.settimeout(5)
    right.settimeout(5)
    errors = []

    def serve():
        try:
            with server_context.wrap_socket(left, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError) as error:
            errors.append(error)
    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_context.wrap_socket(right, server_hostname=server_hostname) as tls:
            tls.sendall(b"x")
            seen = tls.getpeercert()
    finally:
        thread.join(timeout=10)
    if errors:
        raise errors[0]  # the server refused (with TLS 1.3, after the client's handshake)
    return seen


class CertManagerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.prod = render("overlays/prod")

    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="k8s-cert-manager-test-")
        self.addCleanup(shutil.rmtree, self.work, ignore_errors=True)

    def play(self, objects):
        return CertManager(objects, os.path.join(self.work, f"cm-{len(os.listdir(self.work))}"))

    def test_prod_secrets_chain_to_the_ca_and_say_what_their_certificates_ask(self):
        cm = self.play(self.prod)
        self.assertEqual(sorted(cm.secrets), SECRETS)
        ca = cm.secret("stead-ca")
        for secret in SECRETS:
            path = cm.secret(secret)
            self.assertEqual(sorted(os.listdir(path)), ["ca.crt", "tls.crt", "tls.key"], secret)
            with open(os.path.join(path, "ca.crt")) as got, \
                    open(os.path.join(ca, "tls.crt")) as want:
                self.assertEqual(got.read(), want.read(), f"{secret}'s ca.crt is the CA")
            verify = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(ca, "tls.crt"),
                                     os.path.join(path, "tls.crt")], capture_output=True, text=True)
            self.assertEqual(verify.returncode, 0, f"{secret}: {verify.stdout}{verify.stderr}")
            with open(os.path.join(path, "tls.key")) as key:
                self.assertTrue(key.read().startswith("-----BEGIN EC PRIVATE KEY-----"),
                                f"{secret}: an ECDSA key in PKCS1 (SEC 1) encoding")
            public = subprocess.run(["openssl", "pkey", "-in", os.path.join(path, "tls.key"),
                                     "-pubout"], check=True, capture_output=True, text=True).stdout
            self.assertEqual(x509(os.path.join(path, "tls.crt"), "-pubkey"), public, secret)

        text = {s: x509(os.path.join(cm.secret(s), "tls.crt"), "-text") for s in SECRETS}
        self.assertIn("CA:TRUE", text["stead-ca"])
        self.assertIn("Certificate Sign", text["stead-ca"])
        self.assertIn("Subject: CN = stead-ca", text["stead-ca"])
        self.assertIn("DNS:*.stead-peers.stead.svc.cluster.local", text["stead-peer-tls"])
        self.assertIn("TLS Web Server Authentication, TLS Web Client Authentication",
                      text["stead-peer-tls"])
        self.assertIn("DNS:stead.stead.svc.cluster.local", text["stead-server-tls"])
        self.assertIn("IP Address:127.0.0.1", text["stead-server-tls"])
        self.assertIn("Subject: CN = root", text["stead-root-client-tls"])
        self.assertNotIn("Server Authentication", text["stead-root-client-tls"])
        self.assertNotIn("Alternative Name", text["stead-root-client-tls"])
        for leaf in SECRETS[1:]:
            self.assertIn("CA:FALSE", text[leaf])
            self.assertIn("Issuer: CN = stead-ca", text[leaf])

        def lifetime(secret):
            dates = x509(os.path.join(cm.secret(secret), "tls.crt"), "-dates").splitlines()
            parse = lambda line: datetime.datetime.strptime(line.split("=", 1)[1],
                                                            "%b %d %H:%M:%S %Y %Z")
            return (parse(dates[1]) - parse(dates[0])).days
        self.assertEqual(lifetime("stead-ca"), 3650)  # 87600h
        self.assertEqual(lifetime("stead-peer-tls"), 90)  # 2160h

    def test_certificates_carry_mutual_tls_with_host_name_checks(self):
        cm = self.play(self.prod)
        peer, server, client = (cm.secret(s) for s in
                                ("stead-peer-tls", "stead-server-tls", "stead-root-client-tls"))
        seen = handshake(peer, peer, "stead-4.stead-peers.stead.svc.cluster.local")
        self.assertEqual(dict(x[0] for x in seen["subject"])["commonName"], "stead-peer")
        handshake(server, client, "stead.stead.svc.cluster.local")
        handshake(server, server, "stead-0.stead-peers.stead.svc.cluster.local")
        with self.assertRaises(ssl.SSLCertVerificationError):  # names no such host
            handshake(peer, client, "stead.other.svc.cluster.local")
        with self.assertRaises(ssl.SSLError):  # a client certificate of another CA
            handshake(server, self.play(self.prod).secret("stead-root-client-tls"),
                      "stead.stead.svc.cluster.local")

    def test_issuance_follows_dependencies_in_any_order(self):
        cm = self.play(list(reversed(self.prod)))
        self.assertEqual(sorted(cm.secrets), SECRETS)
        self.assertEqual(x509(os.path.join(cm.secret("stead-peer-tls"), "tls.crt"), "-issuer"),
                         "issuer=CN = stead-ca\n")

    def test_a_rendering_without_cert_manager_makes_nothing(self):
        cm = self.play(render("overlays/dev"))
        self.assertEqual(cm.secrets, {})
        self.assertIsNone(cm.secret("stead-root-client-tls"))
        self.assertFalse(os.path.exists(cm.dir))

    def test_what_is_not_played_is_unsupported(self):
        def certificate(name):
            return lambda o: find(o, "Certificate", name)["spec"]
        cases = {
            "acme issuer": lambda o: find(o, "Issuer", "stead-ca").update(
                spec={"acme": {"server": "https://acme.example"}}),
            "selfSigned with options": lambda o: find(o, "Issuer", "stead-selfsigned").update(
                spec={"selfSigned": {"crlDistributionPoints": ["http://crl"]}}),
            "unknown Certificate field": lambda o: certificate("stead-peer")(o).update(
                keystores={"pkcs12": {"create": True}}),
            "unplayed usage": lambda o: certificate("stead-peer")(o)["usages"].append(
                "code signing"),
            "duration of part of a day": lambda o: certificate("stead-peer")(o).update(
                duration="36h"),
            "Ed25519 key": lambda o: certificate("stead-peer")(o)["privateKey"].update(
                algorithm="Ed25519"),
            "issuer not in the rendering": lambda o: certificate("stead-peer")(o).update(
                issuerRef={"name": "letsencrypt", "kind": "ClusterIssuer"}),
            "CA Secret made by nothing": lambda o: find(o, "Issuer", "stead-ca").update(
                spec={"ca": {"secretName": "someone-elses-ca"}}),
            "CA that is not a CA": lambda o: certificate("stead-ca")(o).update(isCA=False),
            "old API version": lambda o: find(o, "Issuer", "stead-ca").update(
                apiVersion="cert-manager.io/v1alpha2"),
            "another kind": lambda o: o.append({
                "apiVersion": "cert-manager.io/v1", "kind": "CertificateRequest",
                "metadata": {"name": "x"}, "spec": {}}),
        }
        for name, mutate in cases.items():
            with self.subTest(name):
                objects = copy.deepcopy(self.prod)
                mutate(objects)
                with self.assertRaises(Unsupported):
                    self.play(objects)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        sys.exit(2)
    K8S_DIR = sys.argv.pop(1)
    for tool in ("kubectl", "openssl"):
        if shutil.which(tool) is None:
            print(f"SKIP: {tool} not found")
            sys.exit(77)
    try:
        import yaml
    except ImportError:
        print("SKIP: python3-yaml not installed")
        sys.exit(77)
    sys.exit(0 if unittest.main(exit=False).result.wasSuccessful() else 1)
