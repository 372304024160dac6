"""cert-manager played with the `openssl` CLI, for the emulation (k8s_emulator.py).

cert-manager turns the Issuers and Certificates of a rendering into Secrets holding
`tls.crt`, `tls.key` and `ca.crt`. CertManager makes the same Secrets at once, as
directories of those three files, in dependency order: a Certificate issued by a
`ca` issuer after the Certificate that makes that issuer's Secret. What it plays:

  Issuer, ClusterIssuer   `selfSigned: {}`, or `ca: {secretName}` (the Secret made by an
                          isCA Certificate of the rendering that is itself self-signed)
  Certificate             secretName, commonName, dnsNames, ipAddresses, usages,
                          duration (whole days), issuerRef, isCA, privateKey (ECDSA
                          256/384 or RSA 2048/3072/4096; encoding; rotationPolicy), and
                          renewBefore, which a run of minutes never reaches

Anything else raises Unsupported, so a manifest change the emulation cannot follow
fails loudly. A ClusterIssuer's `ca` Secret is looked for among the rendering's
Certificates (the emulation has one namespace), not in cert-manager's own namespace.
"""

import os
import random
import re
import subprocess


class Unsupported(Exception):
    """The manifest uses something this emulation does not play."""


SECRET_KEYS = ("tls.crt", "tls.key", "ca.crt")

# cert-manager's usages as OpenSSL names them: key usages, then extended key usages.
KEY_USAGES = {
    "digital signature": "digitalSignature", "content commitment": "nonRepudiation",
    "key encipherment": "keyEncipherment", "data encipherment": "dataEncipherment",
    "key agreement": "keyAgreement", "cert sign": "keyCertSign", "crl sign": "cRLSign",
}
EXTENDED_KEY_USAGES = {"server auth": "serverAuth", "client auth": "clientAuth"}
# What cert-manager gives a Certificate without usages.
DEFAULT_USAGES = ["digital signature", "key encipherment"]
DEFAULT_DURATION_HOURS = 2160

CERTIFICATE_FIELDS = {"secretName", "commonName", "dnsNames", "ipAddresses", "usages",
                      "duration", "renewBefore", "issuerRef", "isCA", "privateKey"}
KEY_SIZES = {"ECDSA": {256: "P-256", 384: "P-384"}, "RSA": {2048: None, 3072: None, 4096: None}}


def duration_days(text, where=""):
    """A Go duration (`2160h`, `90h30m`) in whole days; Unsupported otherwise, since
    `openssl -days` takes whole days."""
    if not re.fullmatch(r"(\d+(h|m|s))+", text):
        raise Unsupported(f"{where}: duration {text}")
    scale = {"h": 3600, "m": 60, "s": 1}
    seconds = sum(int(n) * scale[u] for n, u in re.findall(r"(\d+)(h|m|s)", text))
    if seconds == 0 or seconds % 86400:
        raise Unsupported(f"{where}: duration {text} is not a whole number of days")
    return seconds // 86400


class CertManager:
    """The Secrets cert-manager would make from `objects`, written under `directory`."""

    def __init__(self, objects, directory):
        self.dir = directory
        self.issuers = {}       # (kind, name): spec
        self.certificates = {}  # name: spec
        for o in objects:
            if not o.get("apiVersion", "").startswith("cert-manager.io/"):
                continue
            where = f"{o['kind']}/{o['metadata']['name']}"
            if o["apiVersion"] != "cert-manager.io/v1":
                raise Unsupported(f"{where}: apiVersion {o['apiVersion']}")
            if o["kind"] in ("Issuer", "ClusterIssuer"):
                self.issuers[(o["kind"], o["metadata"]["name"])] = self._issuer(where, o["spec"])
            elif o["kind"] == "Certificate":
                self.certificates[o["metadata"]["name"]] = self._certificate(where, o["spec"])
            else:
                raise Unsupported(f"{where}: cert-manager kind {o['kind']}")
        self.by_secret = {}  # secretName: Certificate name
        for name, spec in self.certificates.items():
            if spec["secretName"] in self.by_secret:
                raise Unsupported(f"Secret {spec['secretName']} made by two Certificates")
            self.by_secret[spec["secretName"]] = name
        self.secrets = {}  # secretName: directory of its keys
        if self.certificates:
            os.makedirs(self.dir, mode=0o700)
        for name in self.certificates:
            self._issue(name, ())

    def secret(self, name):
        """The directory holding Secret `name`'s keys, or None if cert-manager makes none."""
        return self.secrets.get(name)

    # --- what is played -----------------------------------------------------------

    @staticmethod
    def _issuer(where, spec):
        if list(spec) == ["selfSigned"] and not spec["selfSigned"]:
            return spec
        if list(spec) == ["ca"] and list(spec["ca"] or {}) == ["secretName"]:
            return spec
        raise Unsupported(f"{where}: issuer {spec} (only selfSigned: {{}} and ca: {{secretName}})")

    @staticmethod
    def _certificate(where, spec):
        unknown = set(spec) - CERTIFICATE_FIELDS
        if unknown:
            raise Unsupported(f"{where}: spec.{sorted(unknown)[0]}")
        if not spec.get("secretName"):
            raise Unsupported(f"{where}: no secretName")
        ref = spec.get("issuerRef", {})
        if set(ref) - {"name", "kind", "group"} or not ref.get("name") \
                or ref.get("kind", "Issuer") not in ("Issuer", "ClusterIssuer") \
                or ref.get("group", "cert-manager.io") != "cert-manager.io":
            raise Unsupported(f"{where}: issuerRef {ref}")
        for usage in spec.get("usages", []):
            if usage not in KEY_USAGES and usage not in EXTENDED_KEY_USAGES:
                raise Unsupported(f"{where}: usage {usage}")
        key = spec.get("privateKey", {})
        if set(key) - {"algorithm", "size", "encoding", "rotationPolicy"}:
            raise Unsupported(f"{where}: privateKey {key}")
        algorithm = key.get("algorithm", "RSA")
        size = key.get("size", 256 if algorithm == "ECDSA" else 2048)
        if size not in KEY_SIZES.get(algorithm, {}) or key.get("encoding", "PKCS1") not in (
                "PKCS1", "PKCS8") or key.get("rotationPolicy", "Never") not in ("Never", "Always"):
            raise Unsupported(f"{where}: privateKey {key}")
        duration_days(spec.get("duration", f"{DEFAULT_DURATION_HOURS}h"), where)
        return spec

    def _issue(self, name, chain):
        """Makes Certificate `name`'s Secret, after the Secret of its CA issuer."""
        spec = self.certificates[name]
        secret = spec["secretName"]
        if secret in self.secrets:
            return
        if name in chain:
            raise Unsupported(f"Certificate/{name}: issued by itself through {chain}")
        ref = spec["issuerRef"]
        issuer = self.issuers.get((ref.get("kind", "Issuer"), ref["name"]))
        if issuer is None:
            raise Unsupported(f"Certificate/{name}: issuer {ref} not in the rendering")
        ca = None
        if "ca" in issuer:
            ca_name = self.by_secret.get(issuer["ca"]["secretName"])
            if ca_name is None:
                raise Unsupported(f"Certificate/{name}: the CA Secret {issuer['ca']['secretName']}"
                                  f" is made by no Certificate of the rendering")
            ca_spec = self.certificates[ca_name]
            ca_ref = ca_spec["issuerRef"]
            if not ca_spec.get("isCA") or "selfSigned" not in self.issuers.get(
                    (ca_ref.get("kind", "Issuer"), ca_ref["name"]), {}):
                raise Unsupported(f"Certificate/{ca_name}: a CA that is not a self-signed isCA "
                                  f"Certificate")
            self._issue(ca_name, chain + (name,))
            ca = self.secrets[issuer["ca"]["secretName"]]
        self.secrets[secret] = self._write(name, spec, ca)

    def _write(self, name, spec, ca):
        """Writes the Secret's three keys, signed by the Secret in `ca` (None: self-signed)."""
        path = os.path.join(self.dir, spec["secretName"])
        os.makedirs(path, mode=0o700)
        key, crt = os.path.join(path, "tls.key"), os.path.join(path, "tls.crt")
        private_key = spec.get("privateKey", {})
        algorithm = private_key.get("algorithm", "RSA")
        if algorithm == "ECDSA":
            curve = KEY_SIZES["ECDSA"][private_key.get("size", 256)]
            options = ["-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}"]
        else:
            options = ["-algorithm", "RSA", "-pkeyopt",
                       f"rsa_keygen_bits:{private_key.get('size', 2048)}"]
        if private_key.get("encoding", "PKCS1") == "PKCS1":
            # genpkey writes PKCS8; PKCS1 is OpenSSL's "traditional" form (SEC 1 for EC).
            openssl("genpkey", *options, "-out", key + ".pkcs8")
            openssl("pkey", "-in", key + ".pkcs8", "-traditional", "-out", key)
            os.remove(key + ".pkcs8")
        else:
            openssl("genpkey", *options, "-out", key)
        config = os.path.join(path, "openssl.cnf")
        with open(config, "w") as out:
            out.write(extensions(spec))
        subject = f"/CN={spec['commonName']}" if spec.get("commonName") else "/"
        signer = ["-CA", os.path.join(ca, "tls.crt"), "-CAkey", os.path.join(ca, "tls.key")] \
            if ca else []
        openssl("req", "-new", "-x509", "-key", key, "-subj", subject, "-config", config,
                "-extensions", "ext", "-days",
                str(duration_days(spec.get("duration", f"{DEFAULT_DURATION_HOURS}h"))),
                "-set_serial", f"0x{random.getrandbits(120):030x}", *signer, "-out", crt)
        os.remove(config)
        with open(os.path.join(ca or path, "tls.crt")) as source, \
                open(os.path.join(path, "ca.crt"), "w") as out:
            out.write(source.read())
        return path


def extensions(spec):
    """The OpenSSL config of a Certificate's extensions, as cert-manager sets them."""
    usages = spec.get("usages") or DEFAULT_USAGES
    key_usages = [KEY_USAGES[u] for u in usages if u in KEY_USAGES]
    if spec.get("isCA") and "keyCertSign" not in key_usages:
        key_usages.append("keyCertSign")  # cert-manager adds it to every CA
    lines = ["[req]", "distinguished_name = dn", "[dn]", "[ext]",
             f"basicConstraints = critical,CA:{'TRUE' if spec.get('isCA') else 'FALSE'}",
             f"keyUsage = critical,{','.join(key_usages)}", "subjectKeyIdentifier = hash"]
    extended = [EXTENDED_KEY_USAGES[u] for u in usages if u in EXTENDED_KEY_USAGES]
    if extended:
        lines.append(f"extendedKeyUsage = {','.join(extended)}")
    names = [f"DNS.{i} = {n}" for i, n in enumerate(spec.get("dnsNames", []))]
    names += [f"IP.{i} = {a}" for i, a in enumerate(spec.get("ipAddresses", []))]
    if names:
        lines += ["subjectAltName = @names", "[names]", *names]
    return "\n".join(lines) + "\n"


def openssl(*args):
    result = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} exited {result.returncode}: {result.stderr}")
