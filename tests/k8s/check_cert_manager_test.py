#!/usr/bin/env python3
"""Tests of check_cert_manager.py: the prod rendering passes, and each way of breaking
its TLS (a wrong namespace in a name, a missing usage, an unknown field, a typo in an
issuer, a file outside any certificate's Secret, ...) is reported.

    check_cert_manager_test.py K8S_DIR      # exit 0 pass, 1 fail, 77 without kubectl
"""

import copy
import os
import shutil
import subprocess
import sys
import unittest

import yaml

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check_cert_manager  # noqa: E402

K8S_DIR = None


def render(overlay):
    out = subprocess.run(["kubectl", "kustomize", os.path.join(K8S_DIR, overlay)],
                         check=True, capture_output=True, text=True).stdout
    return [o for o in yaml.safe_load_all(out) if o]


def find(objects, kind, name):
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def container(objects):
    return find(objects, "StatefulSet", "stead")["spec"]["template"]["spec"]["containers"][0]


def set_env(objects, name, value):
    for entry in container(objects)["env"]:
        if entry["name"] == name:
            entry["value"] = value


def drop_volume(objects, name):
    pod = find(objects, "StatefulSet", "stead")["spec"]["template"]["spec"]
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] != name]


class CheckCertManagerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.prod = render("overlays/prod")

    def problems_after(self, mutate):
        objects = copy.deepcopy(self.prod)
        mutate(objects)
        return "\n".join(check_cert_manager.check(objects))

    def test_prod_and_the_examples_on_top_of_it_are_clean(self):
        for overlay in ("overlays/prod", "examples/clone", "examples/restore", "examples/backup"):
            with self.subTest(overlay):
                self.assertEqual(check_cert_manager.check(render(overlay)), [])

    def test_each_break_is_reported(self):
        peer = lambda o: find(o, "Certificate", "stead-peer")["spec"]
        server = lambda o: find(o, "Certificate", "stead-server")["spec"]
        cases = {
            "another namespace in the peer names": (
                lambda o: peer(o).update(dnsNames=["*.stead-peers.other.svc.cluster.local"]),
                "does not name member stead-0.stead-peers.stead.svc.cluster.local"),
            "a wildcard over two labels": (
                lambda o: peer(o).update(dnsNames=["*.stead.svc.cluster.local"]),
                "does not name member stead-2"),
            "more replicas than names": (
                lambda o: (find(o, "StatefulSet", "stead")["spec"].update(replicas=4),
                           peer(o).update(dnsNames=[f"stead-{i}.stead-peers.stead.svc.cluster.local"
                                                    for i in range(3)])),
                "does not name member stead-3"),
            "peer without client auth": (
                lambda o: peer(o).update(usages=["digital signature", "server auth"]),
                "mutual TLS needs usage 'client auth'"),
            "forwarding without client auth": (
                lambda o: server(o).update(usages=["digital signature", "server auth"]),
                "it needs usage 'client auth'"),
            "client Service not named": (
                lambda o: server(o).update(dnsNames=["localhost"]),
                "does not name the Service stead.stead.svc.cluster.local"),
            "preStop's 127.0.0.1 not named": (
                lambda o: server(o).pop("ipAddresses"),
                "the preStop hook dials 127.0.0.1"),
            "unknown field": (
                lambda o: server(o).update(dnsName=["stead"]),
                "unknown field spec.dnsName"),
            "unknown usage": (
                lambda o: server(o).update(usages=["server-auth"]),
                "unknown usage 'server-auth'"),
            "bad key algorithm": (
                lambda o: server(o)["privateKey"].update(algorithm="DSA"),
                "spec.privateKey.algorithm must be one of"),
            "renewal after expiry": (
                lambda o: server(o).update(renewBefore="3000h"),
                "renewBefore is not below spec.duration"),
            "issuer typo": (
                lambda o: server(o)["issuerRef"].update(name="stead-cA"),
                "issuer 'stead-cA' is not in the rendering"),
            "CA issuer without a CA certificate": (
                lambda o: find(o, "Certificate", "stead-ca")["spec"].update(isCA=False),
                "made by no CA Certificate"),
            "file outside the Secret": (
                lambda o: set_env(o, "STEAD_PEER_CERT_FILE", "/etc/stead/tls/peer/cert.pem"),
                "STEAD_PEER_CERT_FILE=/etc/stead/tls/peer/cert.pem is not a key"),
            "Secret mounted nowhere": (
                lambda o: drop_volume(o, "tls-client"),
                "Secret 'stead-root-client-tls' is mounted by no pod"),
            "old API version": (
                lambda o: find(o, "Issuer", "stead-ca").update(apiVersion="cert-manager.io/v1alpha2"),
                "not cert-manager.io/v1"),
        }
        for name, (mutate, expected) in cases.items():
            with self.subTest(name):
                self.assertIn(expected, self.problems_after(mutate))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        sys.exit(2)
    K8S_DIR = sys.argv.pop(1)
    if shutil.which("kubectl") is None:
        print("SKIP: kubectl not found (needed for kubectl kustomize)")
        sys.exit(77)
    sys.exit(0 if unittest.main(exit=False).result.wasSuccessful() else 1)
