#!/usr/bin/env python3
"""Checks the cert-manager objects of one rendered kustomization, and how the members use them.

The schema validator knows the Kubernetes API, not cert-manager's CRDs; this checks what
k8s/components/tls relies on:
  - every cert-manager.io object is a v1 Certificate or Issuer with known fields only, of
    the right types and enums (usages, key algorithms, durations);
  - each Certificate's issuer exists in the rendering, and a CA issuer's Secret is made by
    a CA Certificate;
  - every Certificate's Secret is mounted by a pod template, and every file a member or a
    tool is pointed at (STEAD_*_FILE, STEAD_CACERT/CERT/KEY) lies in a mounted Secret of a
    Certificate, under a key cert-manager writes (tls.crt, tls.key, ca.crt);
  - the peer certificate names every ordinal's headless-Service name and serves both
    sides of mutual TLS; the client port's certificate names the client Service and
    127.0.0.1 when the preStop hook dials it, and serves as a client certificate when
    that port requires them (members forward requests to the leader with it).

    check_cert_manager.py RENDERED.yaml     # exit 0 clean, 1 problems (one per line)
"""

import ipaddress
import re
import sys

import yaml

USAGES = {
    "signing", "digital signature", "content commitment", "key encipherment",
    "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
    "decipher only", "any", "server auth", "client auth", "code signing", "email protection",
    "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
    "microsoft sgc", "netscape sgc",
}
CERTIFICATE_FIELDS = {
    "secretName": str, "issuerRef": dict, "commonName": str, "dnsNames": list,
    "ipAddresses": list, "uris": list, "emailAddresses": list, "usages": list,
    "duration": str, "renewBefore": str, "isCA": bool, "privateKey": dict, "subject": dict,
    "secretTemplate": dict, "revisionHistoryLimit": int, "literalSubject": str,
    "keystores": dict,
}
PRIVATE_KEY_FIELDS = {
    "algorithm": ("RSA", "ECDSA", "Ed25519"), "encoding": ("PKCS1", "PKCS8"),
    "rotationPolicy": ("Never", "Always"), "size": int,
}
ISSUER_TYPES = {"selfSigned", "ca", "acme", "vault", "venafi"}
SECRET_KEYS = {"tls.crt", "tls.key", "ca.crt"}
DURATION = re.compile(r"^(\d+(\.\d+)?(h|m|s|ms))+$")


def hours(duration):
    """A Go duration string in hours."""
    scale = {"h": 1.0, "m": 1 / 60, "s": 1 / 3600, "ms": 1 / 3600000}
    return sum(float(n) * scale[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(ms|h|m|s)", duration))


def names_host(pattern, host):
    """Whether a certificate DNS name covers `host` (a wildcard covers one left-most label)."""
    if pattern.startswith("*."):
        first, _, rest = host.partition(".")
        return bool(first) and rest == pattern[2:]
    return pattern == host


def check(objects):
    problems = []
    where = lambda o: f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"
    certificates, issuers = {}, {}
    for o in objects:
        api = o.get("apiVersion", "")
        if not api.startswith("cert-manager.io/"):
            continue
        if api != "cert-manager.io/v1":
            problems.append(f"{where(o)}: apiVersion {api}, not cert-manager.io/v1")
            continue
        spec = o.get("spec")
        if not isinstance(spec, dict):
            problems.append(f"{where(o)}: no spec")
            continue
        name = o["metadata"]["name"]
        if o["kind"] == "Issuer":
            types = set(spec) & ISSUER_TYPES
            if len(types) != 1 or set(spec) - ISSUER_TYPES:
                problems.append(f"{where(o)}: spec must hold exactly one of {sorted(ISSUER_TYPES)}")
            if "ca" in spec and not isinstance(spec["ca"].get("secretName"), str):
                problems.append(f"{where(o)}: ca.secretName missing")
            issuers[name] = o
        elif o["kind"] == "Certificate":
            for field, value in spec.items():
                want = CERTIFICATE_FIELDS.get(field)
                if want is None:
                    problems.append(f"{where(o)}: unknown field spec.{field}")
                elif not isinstance(value, want):
                    problems.append(f"{where(o)}: spec.{field} must be a {want.__name__}")
            if not isinstance(spec.get("secretName"), str):
                problems.append(f"{where(o)}: spec.secretName missing")
            ref = spec.get("issuerRef", {})
            if not isinstance(ref.get("name"), str) or ref.get("kind", "Issuer") not in ("Issuer", "ClusterIssuer"):
                problems.append(f"{where(o)}: spec.issuerRef needs a name and kind Issuer or ClusterIssuer")
            if not any(spec.get(f) for f in ("commonName", "dnsNames", "ipAddresses", "uris")):
                problems.append(f"{where(o)}: names nothing (commonName, dnsNames, ipAddresses or uris)")
            for usage in spec.get("usages", []):
                if usage not in USAGES:
                    problems.append(f"{where(o)}: unknown usage '{usage}'")
            for address in spec.get("ipAddresses", []):
                try:
                    ipaddress.ip_address(address)
                except ValueError:
                    problems.append(f"{where(o)}: '{address}' is not an IP address")
            for field in ("duration", "renewBefore"):
                if field in spec and not DURATION.match(spec[field]):
                    problems.append(f"{where(o)}: spec.{field} '{spec[field]}' is not a duration like 2160h")
            if "duration" in spec and "renewBefore" in spec and DURATION.match(spec["duration"]) \
                    and DURATION.match(spec["renewBefore"]):
                if hours(spec["duration"]) < 1:
                    problems.append(f"{where(o)}: spec.duration under 1h")
                if hours(spec["renewBefore"]) >= hours(spec["duration"]):
                    problems.append(f"{where(o)}: spec.renewBefore is not below spec.duration")
            for field, value in spec.get("privateKey", {}).items():
                want = PRIVATE_KEY_FIELDS.get(field)
                if want is None:
                    problems.append(f"{where(o)}: unknown field spec.privateKey.{field}")
                elif isinstance(want, tuple) and value not in want:
                    problems.append(f"{where(o)}: spec.privateKey.{field} must be one of {list(want)}")
                elif want is int and not isinstance(value, int):
                    problems.append(f"{where(o)}: spec.privateKey.{field} must be an integer")
            certificates[name] = o
        else:
            problems.append(f"{where(o)}: unknown cert-manager kind")

    by_secret = {c["spec"].get("secretName"): c for c in certificates.values()}
    for c in certificates.values():
        ref = c["spec"].get("issuerRef", {})
        if ref.get("kind", "Issuer") == "Issuer" and ref.get("name") not in issuers:
            problems.append(f"{where(c)}: issuer '{ref.get('name')}' is not in the rendering")
    for i in issuers.values():
        secret = i["spec"].get("ca", {}).get("secretName")
        if secret is not None and not by_secret.get(secret, {}).get("spec", {}).get("isCA"):
            problems.append(f"{where(i)}: its CA Secret '{secret}' is made by no CA Certificate")

    services = {o["metadata"]["name"]: o for o in objects if o.get("kind") == "Service"}
    mounted_secrets = set()
    for o in objects:
        template = None
        if o.get("kind") in ("StatefulSet", "Deployment", "Job"):
            template = o["spec"]["template"]
        elif o.get("kind") == "CronJob":
            template = o["spec"]["jobTemplate"]["spec"]["template"]
        if template is None:
            continue
        pod = template["spec"]
        secret_of_volume = {v["name"]: v["secret"]["secretName"]
                            for v in pod.get("volumes", []) if "secret" in v}
        mounted_secrets.update(secret_of_volume.values())
        if not by_secret:
            continue
        for container in pod.get("containers", []):
            mounts = {m["mountPath"].rstrip("/"): secret_of_volume.get(m["name"])
                      for m in container.get("volumeMounts", [])}
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            files = {k: v for k, v in env.items() if v and (
                re.fullmatch(r"STEAD_(CLIENT|PEER|HTTP)_(CERT|KEY|TRUSTED_CA)_FILE", k)
                or k in ("STEAD_CACERT", "STEAD_CERT", "STEAD_KEY"))}
            certificate_of = {}
            for variable, path in files.items():
                directory, _, key = path.rpartition("/")
                secret = mounts.get(directory)
                if secret not in by_secret or key not in SECRET_KEYS:
                    problems.append(f"{where(o)}: {variable}={path} is not a key of a mounted "
                                    f"Certificate's Secret")
                    continue
                certificate_of[variable] = by_secret[secret]
            if o.get("kind") != "StatefulSet":
                continue
            peer = certificate_of.get("STEAD_PEER_CERT_FILE")
            if peer is not None:
                namespace = o["metadata"].get("namespace", "default")
                domain = env.get("STEAD_CLUSTER_DOMAIN") or "cluster.local"
                spec = peer["spec"]
                for i in range(o["spec"].get("replicas", 1)):
                    host = f"{o['metadata']['name']}-{i}.{o['spec']['serviceName']}.{namespace}.svc.{domain}"
                    if not any(names_host(n, host) for n in spec.get("dnsNames", [])):
                        problems.append(f"{where(peer)}: does not name member {host}")
                for usage in ("server auth", "client auth"):
                    if usage not in spec.get("usages", []):
                        problems.append(f"{where(peer)}: mutual TLS needs usage '{usage}'")
            client = certificate_of.get("STEAD_CLIENT_CERT_FILE")
            if client is not None:
                namespace = o["metadata"].get("namespace", "default")
                domain = env.get("STEAD_CLUSTER_DOMAIN") or "cluster.local"
                names = client["spec"].get("dnsNames", [])
                for service in services.values():
                    if service["spec"].get("clusterIP") == "None":
                        continue
                    host = f"{service['metadata']['name']}.{namespace}.svc.{domain}"
                    if not any(names_host(n, host) for n in names):
                        problems.append(f"{where(client)}: does not name the Service {host}")
                if env.get("STEAD_CLIENT_CERT_AUTH") == "true" and \
                        "client auth" not in client["spec"].get("usages", []):
                    problems.append(f"{where(client)}: members forward requests to the leader's "
                                    f"client port with it, which requires client certificates: "
                                    f"it needs usage 'client auth'")
                pre_stop = str(container.get("lifecycle", {}).get("preStop", {}))
                if "127.0.0.1" in pre_stop and "127.0.0.1" not in client["spec"].get("ipAddresses", []):
                    problems.append(f"{where(client)}: the preStop hook dials 127.0.0.1, which it does not name")
    for c in certificates.values():
        if not c["spec"].get("isCA") and c["spec"].get("secretName") not in mounted_secrets:
            problems.append(f"{where(c)}: its Secret '{c['spec'].get('secretName')}' is mounted by no pod")
    return problems


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    with open(sys.argv[1]) as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    problems = check(objects)
    for problem in problems:
        print(f"cert-manager: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
