"""A StatefulSet, its Services and Jobs played on one Linux host.

Renders a kustomization with `kubectl kustomize` and runs what it describes the way
the kubelet and the controllers would, with nothing about the pods written here by
hand: each pod is a process tree in its own network namespace (tests/tools/netns_cluster.sh)
under its DNS name, with the container's command, args and env (downward API filled
in) from the manifest, its volumeMounts bound in a private mount namespace onto a
directory per PVC, as the securityContext's user, with the probes polled from the host
and termination run as preStop, SIGTERM, then SIGKILL after the grace period.
cert-manager is played too (k8s_cert_manager.py): the Secrets of the rendering's
Certificates exist, and secret volumes that name them hold their keys.

Only what stead's manifests use is supported: every field of a rendering is played or
knowingly left aside (k8s_fields.py), and anything else raises Unsupported, so a
manifest change the emulation cannot follow fails loudly instead of being ignored.
"""

import http.client
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

import yaml

from k8s_cert_manager import CertManager, Unsupported  # noqa: F401  (one Unsupported for all)
from k8s_fields import check_fields
from k8s_service_proxy import ServiceProxy


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def render(kustomization_dir):
    """The objects `kubectl kustomize` renders from kustomization_dir."""
    out = subprocess.run(["kubectl", "kustomize", kustomization_dir], check=True,
                         capture_output=True, text=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def http_scheme(get):
    scheme = get.get("scheme", "HTTP")
    if scheme not in ("HTTP", "HTTPS"):
        raise Unsupported(f"httpGet scheme {scheme}")
    return scheme


def find(objects, kind, name=None):
    matches = [o for o in objects if o["kind"] == kind and
               (name is None or o["metadata"]["name"] == name)]
    if len(matches) != 1:
        raise LookupError(f"expected one {kind} {name or ''}, found {len(matches)}")
    return matches[0]


def parse_quantity(text):
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6,
             "G": 10**9}
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", str(text))
    if not match or (match.group(2) and match.group(2) not in units):
        raise Unsupported(f"quantity {text}")
    return int(match.group(1)) * units.get(match.group(2), 1)


def expand(text, env):
    """Kubernetes $(VAR) expansion: defined variables replaced, $$ an escaped $."""
    def one(match):
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, text)


def duration(seconds_field, default):
    return float(seconds_field) if seconds_field is not None else float(default)


def http_request(ip, port, path, timeout, context=None, server_hostname=None):
    """(status, body) of GET path on ip:port, over TLS with `context` when given (checking
    that the certificate names `server_hostname` if the context checks names); None when
    the port does not answer, or not with HTTP."""
    try:
        conn = http.client.HTTPConnection(ip, port, timeout=timeout)
        if context is not None:
            # Dialled by address, verified by name: as a client that resolved the name.
            sock = socket.create_connection((ip, port), timeout=timeout)
            conn.sock = context.wrap_socket(sock, server_hostname=server_hostname)
        conn.request("GET", path)
        response = conn.getresponse()
        answer = (response.status, response.read().decode())
        if context is not None:
            try:
                conn.sock.unwrap()  # close_notify, as the kubelet's TLS client sends
            except (OSError, ValueError):
                pass  # the member closed first
        conn.close()
        return answer
    except (OSError, http.client.HTTPException):
        return None


# The kubelet's HTTPS probes: TLS without checking the certificate.
KUBELET_TLS = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
KUBELET_TLS.check_hostname = False
KUBELET_TLS.verify_mode = ssl.CERT_NONE


class PodRuntime:
    """What a pod's containers are started with: env (downward API filled in), volumes
    bound on their mountPaths in a private mount namespace, the securityContext's
    user. Subclasses say where the pod runs."""

    def __init__(self, cluster, name, spec, ip, directory):
        self.cluster = cluster
        self.name = name
        self.spec = spec
        self.ip = ip
        self.dir = directory
        os.makedirs(self.dir)

    def env_of(self, container):
        env = {"PATH": self.cluster.path, "HOSTNAME": self.name}
        for item in container.get("env", []):
            name = item["name"]
            if "value" in item:
                env[name] = expand(str(item["value"]), env)
                continue
            source = item.get("valueFrom", {})
            if "fieldRef" in source:
                field = source["fieldRef"]["fieldPath"]
                values = {"metadata.name": self.name,
                          "metadata.namespace": self.cluster.namespace,
                          "status.podIP": self.ip}
                if field not in values:
                    raise Unsupported(f"fieldRef {field}")
                env[name] = values[field]
            elif "resourceFieldRef" in source:
                ref = source["resourceFieldRef"]
                kind, _, resource = ref["resource"].partition(".")
                named = [c for c in self.spec["containers"] + self.spec.get("initContainers", [])
                         if c["name"] == ref.get("containerName", container["name"])]
                amount = named[0].get("resources", {}).get(kind, {}).get(resource)
                if amount is None:
                    raise Unsupported(f"resourceFieldRef {ref['resource']} without a value")
                env[name] = str(parse_quantity(amount) // parse_quantity(ref.get("divisor", "1")))
            else:
                raise Unsupported(f"env {name}: {source}")
        return env

    def volume_source(self, volume_name):
        """The host directory standing for the pod's volume `volume_name`."""
        for claim in self.cluster.sts["spec"].get("volumeClaimTemplates", []):
            if claim["metadata"]["name"] == volume_name:
                return self.cluster.pvc_dir(f"{volume_name}-{self.name}")
        for volume in self.spec.get("volumes", []):
            if volume["name"] != volume_name:
                continue
            if "emptyDir" in volume:
                path = os.path.join(self.dir, "volumes", volume_name)
                os.makedirs(path, exist_ok=True)
                self.cluster.own(path)
                return path
            if "persistentVolumeClaim" in volume:
                return self.cluster.pvc_dir(volume["persistentVolumeClaim"]["claimName"])
            if "secret" in volume:
                return self.secret_volume(volume_name, volume["secret"])
            raise Unsupported(f"volume {volume}")
        raise LookupError(f"{self.name}: no volume named {volume_name}")

    def secret_volume(self, volume_name, source):
        """A secret volume as the kubelet writes it for the pod: each key of the Secret a
        file of mode defaultMode, in the group fsGroup. A Secret that nobody makes is
        Unsupported unless optional; then the volume is empty, as the kubelet mounts it."""
        if set(source) - {"secretName", "optional", "defaultMode"}:
            raise Unsupported(f"secret volume {volume_name}: {source}")
        secret = self.cluster.cert_manager.secret(source["secretName"])
        if secret is None and not source.get("optional"):
            raise Unsupported(f"Secret {source['secretName']}, made by no Certificate")
        path = os.path.join(self.dir, "volumes", volume_name)
        os.makedirs(path, exist_ok=True)
        self.cluster.own(path)
        group = self.spec.get("securityContext", {}).get("fsGroup", 0)
        for key in os.listdir(secret) if secret else []:
            shutil.copyfile(os.path.join(secret, key), os.path.join(path, key))
            os.chown(os.path.join(path, key), 0, group)
            os.chmod(os.path.join(path, key), source.get("defaultMode", 0o644))
        return path

    def is_read_only_volume(self, volume_name):
        """Secret volumes, whatever the mount says (as the kubelet mounts them), and PVCs
        the pod asks for with readOnly."""
        return any(v["name"] == volume_name and
                   ("secret" in v or v.get("persistentVolumeClaim", {}).get("readOnly"))
                   for v in self.spec.get("volumes", []))

    def container_argv(self, container, hosts_file=None):
        """argv that sets up the container's mount namespace and user and execs its
        command (every step execs the next: the pid is the container's process)."""
        env = self.env_of(container)
        command = [expand(part, env) for part in container.get("command", [])]
        args = [expand(part, env) for part in container.get("args", [])]
        if not command:
            raise Unsupported("a container without command (the image's entrypoint)")
        mounts = []
        for mount in container.get("volumeMounts", []):
            if mount.get("subPath"):
                raise Unsupported("subPath")
            mounts.append((self.volume_source(mount["name"]), mount["mountPath"],
                           bool(mount.get("readOnly")) or self.is_read_only_volume(mount["name"])))
        script = self.cluster.mount_script(mounts, container, hosts_file)
        user = self.cluster.user_args(self.spec, container)
        return ["unshare", "--mount", "--propagation", "private", "--",
                "sh", "-c", script, "sh", *user, "env", "-i",
                *[f"{k}={v}" for k, v in env.items()], *command, *args]


class Pod(PodRuntime):
    """One pod of the StatefulSet: init containers, then the container, restarted
    with backoff when it exits (restartPolicy Always), probed by a kubelet thread."""

    def __init__(self, cluster, ordinal, template, revision):
        name = f"{cluster.sts_name}-{ordinal}"
        super().__init__(cluster, name, template["spec"], cluster.member_ip(ordinal),
                         os.path.join(cluster.root, "pods",
                                      f"{name}-{random.randrange(1 << 32):08x}"))
        self.ordinal = ordinal
        self.revision = revision
        if len(self.spec["containers"]) != 1:
            raise Unsupported("more than one container")
        self.container = self.spec["containers"][0]
        self.log_path = os.path.join(self.dir, "log")
        self.lock = threading.Lock()
        self.process = None
        self.started = False     # startup probe passed
        self.ready = False       # readiness probe passes
        self.ready_since = None
        self.terminating = False
        self.exits = []          # exit codes of the container's runs that were restarted
        self.init_failed = None
        self.killed = False      # SIGKILL needed at termination
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def output(self):
        """Everything the pod's containers printed so far."""
        try:
            with open(self.log_path, errors="replace") as logfile:
                return logfile.read()
        except FileNotFoundError:
            return ""

    def launch(self, container):
        """Starts `container` in the pod's network namespace; returns its Popen."""
        argv = [self.cluster.netns_script, "exec", str(self.ordinal),
                *self.container_argv(container)]
        logfile = open(self.log_path, "ab")
        logfile.write(f"--- {time.strftime('%H:%M:%S')} {container['name']}\n".encode())
        logfile.flush()
        return subprocess.Popen(argv, stdout=logfile, stderr=subprocess.STDOUT,
                                env=self.cluster.netns_env, start_new_session=True)

    # --- kubelet ----------------------------------------------------------------------

    def _run(self):
        for init in self.spec.get("initContainers", []):
            process = self.launch(init)
            code = process.wait()
            if code != 0:
                self.init_failed = f"init container {init['name']} exited {code}"
                log(f"{self.name}: {self.init_failed}")
                return  # Init:Error; the tests read it and delete the pod
        backoff = 10.0
        while not self.terminating:
            with self.lock:
                if self.terminating:
                    return
                self.process = self.launch(self.container)
            self.started = False
            started_at = time.monotonic()
            self._probe_until_exit()
            code = self.process.wait()
            self.ready = False
            if self.terminating:
                return
            self.exits.append(code)
            log(f"{self.name}: container exited {code}; restart {len(self.exits)} in "
                f"{backoff:.0f} s")
            if time.monotonic() - started_at > 600:
                backoff = 10.0
            deadline = time.monotonic() + backoff
            while time.monotonic() < deadline and not self.terminating:
                time.sleep(0.2)
            backoff = min(backoff * 2, 300.0)

    def http_probe(self, probe):
        get = probe.get("httpGet")
        if get is None:
            raise Unsupported(f"probe {probe}")
        port = self.cluster.port_number(self.container, get["port"])
        context = KUBELET_TLS if http_scheme(get) == "HTTPS" else None
        answer = http_request(self.ip, port, get["path"],
                              duration(probe.get("timeoutSeconds"), 1), context)
        return answer is not None and 200 <= answer[0] < 400

    def _probe_until_exit(self):
        startup = self.container.get("startupProbe")
        liveness = self.container.get("livenessProbe")
        readiness = self.container.get("readinessProbe")
        next_due = {}
        failures = {"startup": 0, "liveness": 0, "readiness": 0}
        now = time.monotonic()
        for kind, probe in (("startup", startup), ("liveness", liveness),
                            ("readiness", readiness)):
            if probe:
                next_due[kind] = now + duration(probe.get("initialDelaySeconds"), 0)
        if not startup:
            self.started = True
        while self.process.poll() is None:
            now = time.monotonic()
            for kind, probe in (("startup", startup), ("liveness", liveness),
                                ("readiness", readiness)):
                if not probe or now < next_due.get(kind, now):
                    continue
                if kind == "startup" and self.started:
                    continue
                if kind != "startup" and not self.started:
                    continue
                if kind == "readiness" and self.terminating:
                    continue  # a terminating pod is out of the endpoints for good
                next_due[kind] = now + duration(probe.get("periodSeconds"), 10)
                ok = self.http_probe(probe)
                threshold = duration(probe.get("failureThreshold"), 3)
                if ok:
                    failures[kind] = 0
                    if kind == "startup":
                        self.started = True
                    elif kind == "readiness" and not self.ready:
                        self.ready, self.ready_since = True, time.monotonic()
                        log(f"{self.name}: Ready")
                    continue
                failures[kind] += 1
                if kind == "readiness" and failures[kind] >= threshold and self.ready:
                    self.ready = False
                    log(f"{self.name}: not Ready")
                if kind in ("startup", "liveness") and failures[kind] >= threshold:
                    log(f"{self.name}: {kind} probe failed {failures[kind]} times: killing")
                    self._signal(signal.SIGKILL)
            self._enforce_memory_limit()
            time.sleep(0.2)

    def _enforce_memory_limit(self):
        """The kernel's OOM kill of a container over its limits.memory (its main process's
        resident memory, checked as often as the probes)."""
        limit = self.container.get("resources", {}).get("limits", {}).get("memory")
        if limit is None or self.process is None:
            return
        try:
            with open(f"/proc/{self.process.pid}/status") as status:
                rss = next(int(line.split()[1]) * 1024 for line in status
                           if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            return
        if rss > parse_quantity(limit):
            log(f"{self.name}: OOMKilled ({rss} bytes resident, limit {limit})")
            self._signal(signal.SIGKILL)

    def _signal(self, sig):
        with self.lock:
            if self.process and self.process.poll() is None:
                os.kill(self.process.pid, sig)

    def is_ready(self, min_ready_seconds=0):
        return (self.ready and not self.terminating and self.ready_since is not None and
                time.monotonic() - self.ready_since >= min_ready_seconds)

    def pre_stop(self):
        """Runs the preStop hook, bounded by the caller; returns what it did."""
        hook = self.container.get("lifecycle", {}).get("preStop")
        if not hook:
            return "none"
        if "sleep" in hook:
            time.sleep(float(hook["sleep"]["seconds"]))
            return f"slept {hook['sleep']['seconds']} s"
        if "exec" in hook:
            env = self.env_of(self.container)  # exec hooks get no $(VAR) expansion
            user = self.cluster.user_args(self.spec, self.container)
            argv = ["nsenter", "-t", str(self.process.pid), "-n", "-m", "-u", "--",
                    *user, "env", "-i", *[f"{k}={v}" for k, v in env.items()],
                    *hook["exec"]["command"]]
            with open(self.log_path, "ab") as logfile:
                logfile.write(f"--- {time.strftime('%H:%M:%S')} preStop\n".encode())
                logfile.flush()
                code = subprocess.run(argv, stdout=logfile, stderr=subprocess.STDOUT,
                                      timeout=self.grace_seconds()).returncode
            return f"exec exited {code}"
        if "httpGet" in hook:
            return "httpGet " + str(self.http_probe(hook))
        raise Unsupported(f"preStop {hook}")

    def grace_seconds(self):
        return duration(self.spec.get("terminationGracePeriodSeconds"), 30)

    def delete(self):
        """Graceful deletion: out of the Service at once, preStop, SIGTERM, SIGKILL at
        the end of the grace period. Returns a summary of how it went."""
        self.terminating = True
        self.ready = False
        deadline = time.monotonic() + self.grace_seconds()
        result = {"pod": self.name, "pre_stop": "not running"}
        if self.process and self.process.poll() is None:
            began = time.monotonic()
            try:
                result["pre_stop"] = self.pre_stop()
            except subprocess.TimeoutExpired:
                result["pre_stop"] = "timed out"
            result["pre_stop_seconds"] = round(time.monotonic() - began, 1)
            result["leader_after_pre_stop"] = self.cluster.is_leader(self)
            self._signal(signal.SIGTERM)
            while self.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.process.poll() is None:
                # The kubelet's 2 s extension is only for a hook still running.
                self.killed = True
                self._signal(signal.SIGKILL)
                log(f"{self.name}: SIGKILL at the end of the grace period")
            result["exit_code"] = self.process.wait()
        self.thread.join(timeout=15)
        result["killed"] = self.killed
        return result


class Cluster:
    """A StatefulSet from rendered manifests, run over a netns-cluster of `slots`
    network namespaces (one per ordinal that may ever run). `snapshots` names the
    directories that VolumeSnapshots of the manifests' PVCs stand for."""

    def __init__(self, objects, root, netns_script, bin_dir, slots, subnet, prefix,
                 snapshots=None):
        self.objects = objects
        self.snapshots = snapshots or {}  # VolumeSnapshot name: directory
        self.root = root
        self.netns_script = netns_script
        self.path = f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"
        self.sts = find(objects, "StatefulSet")
        self.sts_name = self.sts["metadata"]["name"]
        self.namespace = self.sts["metadata"].get("namespace", "default")
        self.peer_service = self.sts["spec"]["serviceName"]
        self.prefix = prefix
        self.netns_env = dict(os.environ, CLUSTER_STS=self.sts_name,
                              CLUSTER_SVC=self.peer_service,
                              CLUSTER_NAMESPACE=self.namespace, CLUSTER_PREFIX=prefix)
        self.created_mountpoints = []
        self.pods = {}
        self.every_pod = []  # every pod ever created, deleted ones too (their exits count)
        self.revision = 1
        self.template = self.sts["spec"]["template"]
        self.check_supported()
        self.cert_manager = CertManager(objects, os.path.join(root, "cert-manager"))
        subprocess.run([netns_script, "up", str(slots), subnet], env=self.netns_env,
                       check=True, stdout=subprocess.DEVNULL)
        self.host_ip = subnet.rsplit(".", 1)[0] + ".1"
        self.hosts_file = os.path.join(root, f"hosts-{prefix}")
        self.write_hosts()
        self.proxies = [self.start_service(s) for s in self.client_services()]

    def check_supported(self):
        check_fields(self.objects)
        spec = self.sts["spec"]
        if spec.get("podManagementPolicy") != "Parallel":
            raise Unsupported("podManagementPolicy other than Parallel")
        if spec.get("updateStrategy", {}).get("type", "RollingUpdate") != "RollingUpdate":
            raise Unsupported("updateStrategy other than RollingUpdate")

    # --- names and addresses ----------------------------------------------------------

    def member_ip(self, ordinal):
        return subprocess.run([self.netns_script, "ip", str(ordinal)], env=self.netns_env,
                              check=True, capture_output=True, text=True).stdout.strip()

    def client_services(self):
        labels = self.template["metadata"]["labels"]
        services = []
        for service in self.objects:
            if service["kind"] != "Service" or service["metadata"]["name"] == self.peer_service:
                continue
            selector = service["spec"].get("selector", {})
            if selector and all(labels.get(k) == v for k, v in selector.items()):
                services.append(service)
        return services

    def client_service_name(self):
        return self.client_services()[0]["metadata"]["name"]

    def client_service_port(self):
        return self.client_services()[0]["spec"]["ports"][0]["port"]

    def write_hosts(self):
        """The host's view of DNS: every pod's names and each client Service's names,
        which resolve to the proxy on the host side of the bridge."""
        members = subprocess.run([self.netns_script, "hosts"], env=self.netns_env, check=True,
                                 capture_output=True, text=True).stdout
        lines = [members.rstrip("\n")]
        for service in self.client_services():
            name = service["metadata"]["name"]
            names = [name, f"{name}.{self.namespace}", f"{name}.{self.namespace}.svc",
                     f"{name}.{self.namespace}.svc.cluster.local"]
            lines.append(f"{self.host_ip} {' '.join(names)}")
        with open(self.hosts_file, "w") as out:
            out.write("\n".join(lines) + "\n")

    def port_number(self, container, port):
        if isinstance(port, int):
            return port
        for item in container.get("ports", []):
            if item.get("name") == port:
                return item["containerPort"]
        raise LookupError(f"no port named {port}")

    def start_service(self, service):
        port = service["spec"]["ports"][0]
        if len(service["spec"]["ports"]) != 1:
            raise Unsupported("client Service with several ports")

        def backends():
            return [(pod.ip, self.port_number(pod.container, port.get("targetPort", port["port"])))
                    for pod in list(self.pods.values()) if pod.is_ready()]
        return ServiceProxy(self.host_ip, port["port"], backends)

    # --- volumes and users ------------------------------------------------------------

    def pvc_dir(self, claim):
        """The PVC's directory, provisioned on first use: empty, or for a PVC of the
        manifests with a VolumeSnapshot as dataSource, a copy of that snapshot."""
        path = os.path.join(self.root, "pvc", claim)
        if os.path.isdir(path):
            return path
        source = None
        for pvc in self.objects:
            if pvc["kind"] == "PersistentVolumeClaim" and pvc["metadata"]["name"] == claim:
                source = pvc["spec"].get("dataSource")
        if source is None:
            os.makedirs(path)
            self.own(path)
            return path
        if source.get("kind") != "VolumeSnapshot" or source["name"] not in self.snapshots:
            raise Unsupported(f"PVC {claim}: dataSource {source} is not a known VolumeSnapshot")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run(["cp", "-a", self.snapshots[source["name"]], path], check=True)
        return path

    def own(self, path):
        """As fsGroup with OnRootMismatch: the volume's root belongs to the pod's user."""
        context = self.template["spec"].get("securityContext", {})
        uid, gid = context.get("runAsUser", 0), context.get("fsGroup", 0)
        os.chown(path, uid, gid)
        os.chmod(path, 0o2770)

    def mount_script(self, mounts, container, hosts_file=None):
        """Shell run in the pod's private mount namespace before the container: binds
        each volume on its mountPath and makes the root read-only when asked."""
        lines = ["set -e"]
        if hosts_file:
            lines.append(f"mount --bind '{hosts_file}' /etc/hosts")
        for source, target, read_only in mounts:
            self.note_mountpoint(target)
            lines.append(f"mkdir -p '{target}' && mount --bind '{source}' '{target}'")
            if read_only:
                lines.append(f"mount -o remount,bind,ro '{target}'")
        if container.get("securityContext", {}).get("readOnlyRootFilesystem"):
            lines.append("mount -o remount,bind,ro /")
        lines.append('exec "$@"')
        return "\n".join(lines)

    def note_mountpoint(self, target):
        """Remembers the directories a mountPath makes on the host (removed by down())."""
        missing = target
        while not os.path.exists(os.path.dirname(missing)):
            missing = os.path.dirname(missing)
        if not os.path.exists(target):
            self.created_mountpoints.append((target, missing))

    def user_args(self, pod_spec, container):
        context = dict(pod_spec.get("securityContext", {}))
        context.update(container.get("securityContext", {}))
        uid, gid = context.get("runAsUser"), context.get("runAsGroup")
        if uid is None:
            if context.get("runAsNonRoot"):
                raise Unsupported("runAsNonRoot without runAsUser (image user)")
            return []
        groups = [str(context["fsGroup"])] if "fsGroup" in context else []
        args = ["setpriv", f"--reuid={uid}", f"--regid={gid if gid is not None else uid}"]
        args += [f"--groups={','.join(groups)}"] if groups else ["--clear-groups"]
        if "ALL" in context.get("capabilities", {}).get("drop", []):
            args += ["--inh-caps=-all", "--bounding-set=-all"]
        if context.get("allowPrivilegeEscalation") is False:
            args += ["--no-new-privs"]
        return args

    # --- the controller ---------------------------------------------------------------

    def create_pods(self, ordinals):
        """Parallel pod management: every missing pod created at once."""
        for ordinal in ordinals:
            if ordinal in self.pods:
                raise RuntimeError(f"pod {ordinal} exists")
            self.pods[ordinal] = Pod(self, ordinal, self.template, self.revision)
            self.every_pod.append(self.pods[ordinal])
            log(f"{self.pods[ordinal].name}: created (revision {self.revision})")

    def delete_pods(self, ordinals):
        """Deletes pods at once (as for a scale-down); returns their summaries."""
        results = {}
        threads = []
        for ordinal in ordinals:
            pod = self.pods.pop(ordinal)

            def run(pod=pod, ordinal=ordinal):
                results[ordinal] = pod.delete()
            threads.append(threading.Thread(target=run))
            threads[-1].start()
        for thread in threads:
            thread.join()
        for ordinal in ordinals:
            log(f"deleted: {results[ordinal]}")
        return results

    def wait_ready(self, ordinals, timeout, min_ready_seconds=0):
        """Whether the pods are Ready (for min_ready_seconds) within timeout (0: now)."""
        deadline = time.monotonic() + timeout
        while True:
            if all(o in self.pods and self.pods[o].is_ready(min_ready_seconds) for o in ordinals):
                return True
            if any(o in self.pods and self.pods[o].init_failed for o in ordinals):
                return False
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.2)

    def rolling_update(self, template, timeout_per_pod, before_delete=lambda pod: None):
        """RollingUpdate with partition 0: highest ordinal first, each replaced pod
        Ready for minReadySeconds before the next goes."""
        check_fields([{"kind": "StatefulSet", "metadata": self.sts["metadata"],
                       "spec": {"template": template}}])
        min_ready = duration(self.sts["spec"].get("minReadySeconds"), 0)
        self.revision += 1
        self.template = template
        results = []
        for ordinal in sorted(self.pods, reverse=True):
            before_delete(self.pods[ordinal])
            result = self.delete_pods([ordinal])[ordinal]
            self.create_pods([ordinal])
            if not self.wait_ready([ordinal], timeout_per_pod, min_ready):
                raise AssertionError(f"rolling update: {self.pods[ordinal].name} not Ready "
                                     f"within {timeout_per_pod} s")
            results.append(result)
        return results

    def delete_volumes(self, ordinal):
        for claim in self.sts["spec"].get("volumeClaimTemplates", []):
            shutil.rmtree(os.path.join(self.root, "pvc",
                                       f"{claim['metadata']['name']}-{self.sts_name}-{ordinal}"),
                          ignore_errors=True)

    # --- probes and commands from the host -----------------------------------------

    def tool_tls(self):
        """{"cacert", "cert", "key"}: the host paths of the files the pods' own tools
        (steadctl in the preStop hook) are given by STEAD_CACERT, STEAD_CERT and
        STEAD_KEY, for the test's requests to speak TLS as they do; None without TLS."""
        container = self.template["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        files = {}
        for flag, variable in (("cacert", "STEAD_CACERT"), ("cert", "STEAD_CERT"),
                               ("key", "STEAD_KEY")):
            if env.get(variable):
                files[flag] = self.secret_file(container, env[variable])
        return files or None

    def secret_file(self, container, path):
        """The host file of a cert-manager Secret's key that `container` sees at `path`."""
        directory, _, key = path.rpartition("/")
        volumes = {v["name"]: v for v in self.template["spec"].get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            secret = volumes.get(mount["name"], {}).get("secret", {}).get("secretName")
            if mount["mountPath"].rstrip("/") == directory and self.cert_manager.secret(secret):
                return os.path.join(self.cert_manager.secret(secret), key)
        raise Unsupported(f"{path} is not a key of a mounted cert-manager Secret")

    def tls_flags(self):
        """steadctl's and stead-load-check's flags for this cluster: TLS with the tools'
        client certificate when the members speak TLS, else none."""
        return [f"--{flag}={path}" for flag, path in (self.tool_tls() or {}).items()]

    def http_context(self, container):
        """The TLS context of the test's own requests to the http port (None: plain):
        HTTPS when the kubelet's probes use it, checking the member's certificate
        against the cluster's CA and presenting the tools' client certificate."""
        schemes = {http_scheme(probe["httpGet"]) for probe in (
            container.get(kind) for kind in ("startupProbe", "livenessProbe", "readinessProbe"))
            if probe and "httpGet" in probe
            and self.port_number(container, probe["httpGet"]["port"]) ==
            self.port_number(container, "http")}
        if len(schemes) > 1:
            raise Unsupported(f"probes of one port with schemes {sorted(schemes)}")
        if schemes != {"HTTPS"}:
            return None
        tls = self.tool_tls()
        if tls is None:
            return KUBELET_TLS
        context = ssl.create_default_context(cafile=tls["cacert"])
        context.load_cert_chain(tls["cert"], tls["key"])
        return context

    def pod_dns_name(self, pod):
        return f"{pod.name}.{self.peer_service}.{self.namespace}.svc.cluster.local"

    def http_get(self, pod, path, scheme=None):
        """(status, body) of GET path on the pod's http port, or None if unreachable.
        HTTPS (checking the pod's certificate names it) when the probes use HTTPS;
        `scheme` forces one."""
        port = self.port_number(pod.container, "http")
        context = self.http_context(pod.container)
        if scheme == "HTTP":
            context = None
        elif scheme == "HTTPS" and context is None:
            raise ValueError(f"{pod.name}: no HTTPS on the http port")
        return http_request(pod.ip, port, path, 3, context, self.pod_dns_name(pod))

    def metrics(self, pod):
        """The pod's /metrics as {name: value} (unlabelled series), None if unreachable."""
        answer = self.http_get(pod, "/metrics")
        if answer is None:
            return None
        values = {}
        for line in answer[1].splitlines():
            match = re.fullmatch(r"([a-z_]+) (\S+)", line)
            if match:
                values[match.group(1)] = float(match.group(2))
        return values

    def is_leader(self, pod):
        values = self.metrics(pod)
        return None if values is None else values.get("stead_raft_is_leader") == 1

    def host_command(self, argv):
        """Runs argv on the host side, resolving pod and Service names as a pod would."""
        script = 'mount --bind "$0" /etc/hosts && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
                self.hosts_file, *argv]

    def run_host(self, argv, timeout=60, check=True):
        result = subprocess.run(self.host_command(argv), capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {result.returncode}:\n"
                                 f"{result.stdout}{result.stderr}")
        return result

    def run_job(self, job_spec, timeout):
        """Runs a Job's pod template to completion on the host side (a node outside the
        StatefulSet's namespaces, which resolves the Services)."""
        return JobPod(self, job_spec["template"]["spec"]).run(timeout)

    def down(self):
        for ordinal in list(self.pods):
            pod = self.pods.pop(ordinal)
            pod.terminating = True
            if pod.process and pod.process.poll() is None:
                os.kill(pod.process.pid, signal.SIGKILL)
                pod.process.wait()
        for proxy in self.proxies:
            proxy.stop()
        subprocess.run([self.netns_script, "down"], env=self.netns_env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Bottom-up, and never above the first directory a mountPath created.
        for target, top in sorted(set(self.created_mountpoints), key=lambda t: -len(t[0])):
            while True:
                try:
                    os.rmdir(target)
                except OSError:
                    break
                if target == top:
                    break
                target = os.path.dirname(target)


class JobPod(PodRuntime):
    """The pod of a Job, run once on the host side (a node outside the StatefulSet's
    network namespaces) with the cluster's DNS view."""

    def __init__(self, cluster, spec):
        super().__init__(cluster, "job", spec, cluster.host_ip,
                         os.path.join(cluster.root, "jobs", f"{random.randrange(1 << 32):08x}"))

    def run(self, timeout):
        argv = self.container_argv(self.spec["containers"][0], self.cluster.hosts_file)
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
