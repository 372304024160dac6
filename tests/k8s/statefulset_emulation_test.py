#!/usr/bin/env python3
"""The manifests of k8s/ played as a StatefulSet on this host (tests/k8s/README.md).

Renders tests/k8s/emulation (the dev overlay with the backup component), runs its pods
with k8s_emulator.py over tests/tools/netns_cluster.sh, and goes through what operators
do, each step under a client load through the client Service whose acknowledged
writes are all read back afterwards:

  1. parallel bootstrap of 3 pods; all Ready; writes through the client Service;
  2. the leader's pod deleted and recreated on the same volumes: it rejoins alone;
  3. rolling update of every pod: no request fails (the client retries), leadership moved
     by each leader's preStop, every pod exits 0 on SIGTERM (no SIGKILL);
  4. scale 3 -> 5: the new ordinals join as learners, are cloned from a checkpoint
     (a Raft snapshot) and are promoted;
  5. scale 5 -> 3 by docs/scale-down.md, volumes deleted; scale to 5 and back again;
  6. stead-0's volumes copied at one instant under load (the clone's snapshots);
     backup with the CronJob's own command; the StatefulSet deleted (PVCs of
     ordinals 3 and 4 retained); a new cluster from the restore component holds the
     same content;
  7. scaling that new cluster up onto the retained volume of the old cluster: the
     member refuses to serve, with the message of docs/lost-volume.md;
  8. k8s/examples/clone started on those copies: the state of stead-0's last flush
     before the copy under new identities, with TLS on (its prod base has the tls
     component; the emulator plays cert-manager): plain requests and clients without
     a certificate are refused on the members' ports.

Needs root, kubectl, openssl, python3-yaml, iproute2, iptables, util-linux. Exit 0 on
success, 1 on failure, 77 when it cannot run here (ctest SKIP).

  tests/k8s/statefulset_emulation_test.py --stead=build/dev/server/stead \
      --steadctl=build/dev/client/steadctl --load-tool=build/dev/tests/k8s/stead-load-check
"""

import argparse
import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # nothing written into the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# How the test names the restored cluster's overlay: as docs/restore.md tells a user to.
RESTORE_OVERLAY = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {base}
components:
  - {restore}
patches:
  - target:
      kind: StatefulSet
      name: stead
    patch: |-
      - op: replace
        path: /spec/template/spec/initContainers/0/env/1/value
        value: {file}
"""

# What a member on another cluster's volume logs (docs/lost-volume.md).
STALE_VOLUME_MESSAGE = "this member's volumes are stale"


# Writes the load must get acknowledged while a disruption happens (4 writers, several
# seconds each: hundreds when the cluster serves).
MIN_WRITES_DURING_A_DISRUPTION = 20
# What a member logs when the leader accepts it as a learner (server/node.cc).
JOINED_AS_LEARNER = "accepted this member: adding it as a learner"

def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(77)


def check_prerequisites():
    if os.geteuid() != 0:
        skip("needs root (network namespaces, bind mounts)")
    for tool in ("kubectl", "openssl", "ip", "iptables", "unshare", "nsenter", "setpriv"):
        if shutil.which(tool) is None:
            skip(f"{tool} not found")
    try:
        import yaml  # noqa: F401
    except ImportError:
        skip("python3-yaml not installed")


check_prerequisites()

import k8s_emulator as k8s  # noqa: E402  (after the check: it needs yaml)
from k8s_emulator import log  # noqa: E402


class Load:
    """stead-load-check writing through the client Service until stopped (over TLS with
    the tools' client certificate where the cluster has TLS on)."""

    def __init__(self, cluster, tool, work, name, route_to_leader=True):
        self.cluster, self.tool, self.name = cluster, tool, name
        self.acked = os.path.join(work, f"acked-{name}")
        self.prefix = f"load/{name}"
        self.endpoint = f"{cluster.client_service_name()}:{cluster.client_service_port()}"
        self.stderr = open(os.path.join(work, f"load-{name}.log"), "w")
        self.process = subprocess.Popen(
            cluster.host_command([tool, "write", f"--endpoints={self.endpoint}",
                                  f"--prefix={self.prefix}", f"--acked-file={self.acked}",
                                  "--writers=4", "--request-timeout=10s",
                                  f"--route-to-leader={str(route_to_leader).lower()}",
                                  *cluster.tls_flags()]),
            stdout=subprocess.PIPE, stderr=self.stderr, text=True, start_new_session=True)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=60)
        line = next((l for l in out.splitlines() if l.startswith("RESULT ")), "")
        result = dict(item.split("=", 1) for item in line.split()[1:])
        log(f"load {self.name}: {line}")
        if self.process.returncode != 0:
            raise AssertionError(f"load {self.name} exited {self.process.returncode}")
        return result

    def acked_count(self):
        """Writes acknowledged so far (the tool appends and flushes each one)."""
        try:
            with open(self.acked) as acked:
                return sum(1 for _ in acked)
        except FileNotFoundError:
            return 0

    def writes_during(self, what, disruption):
        """Runs `disruption` and asserts that writes were acknowledged while it ran: a
        stalled load would otherwise pass with "no failed attempts"."""
        before = self.acked_count()
        result = disruption()
        grown = self.acked_count() - before
        log(f"load {self.name}: {grown} writes acknowledged during {what}")
        assert grown >= MIN_WRITES_DURING_A_DISRUPTION, (
            f"only {grown} writes acknowledged during {what}: the load stalled")
        return result

    def verify(self, cluster=None):
        """Every acknowledged write is readable (through `cluster`'s Service)."""
        cluster = cluster or self.cluster
        endpoint = f"{cluster.client_service_name()}:{cluster.client_service_port()}"
        result = cluster.run_host([self.tool, "verify", f"--endpoints={endpoint}",
                                   f"--acked-file={self.acked}", f"--prefix={self.prefix}",
                                   *cluster.tls_flags()],
                                  timeout=120, check=False)
        log(f"verify {self.name}: {result.stdout.strip()}")
        if result.returncode != 0:
            raise AssertionError(f"verify {self.name} failed:\n{result.stdout}{result.stderr}")
        return result.stdout


class Test:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="stead-k8s-", dir=args.work_root)
        os.chmod(self.work, 0o755)
        self.bin = os.path.join(self.work, "bin")
        os.makedirs(self.bin)
        # The image: the binaries, where the pods' non-root user can run them.
        for path in (args.stead, args.steadctl):
            shutil.copy(path, self.bin)
        self.load_tool = os.path.abspath(args.load_tool)
        self.netns = os.path.abspath(args.netns_script)
        self.clusters = []
        self.loads = []

    def new_cluster(self, kustomization, subnet, prefix, root, snapshots=None):
        objects = k8s.render(kustomization)
        os.makedirs(root, exist_ok=True)
        os.chmod(root, 0o755)
        cluster = k8s.Cluster(objects, root, self.netns, self.bin, 5, subnet, prefix, snapshots)
        self.clusters.append(cluster)
        return cluster

    def steadctl(self, cluster, *args, timeout=30, endpoint=None):
        """steadctl through the client Service (or `endpoint`), over TLS with the tools'
        client certificate where the cluster has TLS on."""
        endpoint = endpoint or f"{cluster.client_service_name()}:{cluster.client_service_port()}"
        return cluster.run_host([os.path.join(self.bin, "steadctl"), f"--endpoints={endpoint}",
                                 *cluster.tls_flags(), *args], timeout=timeout + 10)

    def members(self, cluster):
        out = self.steadctl(cluster, "--output=json", "member", "list").stdout
        return json.loads(out)

    def start_load(self, cluster, name, route_to_leader=True):
        """A load through the client Service; with route_to_leader off every request
        goes through the Service to whichever member it picks, which forwards it."""
        load = Load(cluster, self.load_tool, self.work, name, route_to_leader)
        self.loads.append(load)
        time.sleep(3)
        return load

    def run(self):
        a = self.new_cluster(os.path.join(SOURCE_DIR, "tests/k8s/emulation"), self.args.subnet,
                             f"sk8sa{os.getpid() % 1000}", os.path.join(self.work, "a"))
        self.scenario_bootstrap(a)
        self.check_no_restarts(a)
        self.scenario_recreate(a)
        self.check_no_restarts(a)
        self.scenario_rolling_update(a)
        self.check_no_restarts(a)
        self.scenario_scale_up(a, [3, 4], "scale-up")
        self.check_no_restarts(a)
        self.scenario_scale_down(a)
        self.check_no_restarts(a)
        b = self.scenario_backup_restore(a)
        self.check_no_restarts(b)
        self.scenario_stale_volume(b)
        self.scenario_clone()

    def check_no_restarts(self, cluster):
        """No container exited on its own (a crash the kubelet would hide by restarting),
        in the pods that run and in those deleted since they were created; then every
        member at one content hash."""
        crashed = [(pod.name, pod.revision, pod.exits) for pod in cluster.every_pod if pod.exits]
        assert not crashed, f"containers exited and were restarted: {crashed}"
        if cluster.pods:
            self.content_hash(cluster)

    def wait_for(self, what, predicate, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def voters(self, cluster):
        return sorted(m["name"] for m in self.members(cluster)["members"] if not m["is_learner"])

    def leader_ordinal(self, cluster):
        def leader():
            try:
                for m in self.members(cluster)["members"]:
                    if m["is_leader"]:
                        return m["name"]
            except AssertionError:
                return None
            return None
        name = self.wait_for("a leader", leader, 30)
        return int(name.rsplit("-", 1)[1])

    # 1 ------------------------------------------------------------------------------
    def scenario_bootstrap(self, a):
        log("== 1. parallel bootstrap of the pods")
        replicas = a.sts["spec"]["replicas"]
        a.create_pods(range(replicas))
        assert a.wait_ready(range(replicas), 120), f"{replicas} pods not Ready within 120 s"
        load = self.start_load(a, "bootstrap")
        time.sleep(5)
        voters = self.voters(a)
        assert voters == [f"stead-{i}" for i in range(replicas)], voters
        result = load.stop()
        assert int(result["acked"]) > 0, result
        load.verify()

    # 2 ------------------------------------------------------------------------------
    def scenario_recreate(self, a):
        log("== 2. the leader's pod deleted and recreated on the same volumes")
        load = self.start_load(a, "recreate")
        ordinal = self.leader_ordinal(a)
        before = {m["name"]: m["id"] for m in self.members(a)["members"]}
        def recreate():
            a.delete_pods([ordinal])
            a.create_pods([ordinal])
            assert a.wait_ready([ordinal], 120), f"stead-{ordinal} not Ready again within 120 s"
        load.writes_during("the leader's recreation", recreate)
        after = {m["name"]: m["id"] for m in self.members(a)["members"]}
        assert after == before, f"membership changed: {before} -> {after}"
        time.sleep(3)
        load.stop()
        load.verify()

    # 3 ------------------------------------------------------------------------------
    def scenario_rolling_update(self, a):
        log("== 3. rolling update of every pod")
        load = self.start_load(a, "rolling")
        service_load = self.start_load(a, "rolling-service", route_to_leader=False)
        template = copy.deepcopy(a.template)
        template["metadata"].setdefault("annotations", {})["emulation/revision"] = "2"
        leaders = []

        def before_delete(pod):
            leaders.append((pod.name, a.is_leader(pod)))
        results = service_load.writes_during("the rolling update", lambda: load.writes_during(
            "the rolling update", lambda: a.rolling_update(template, 180, before_delete)))
        time.sleep(3)
        stats = load.stop()
        service_stats = service_load.stop()
        for result in results:
            assert result["exit_code"] == 0 and not result["killed"], result
        was_leader = [name for name, leading in leaders if leading]
        assert was_leader, f"no pod was leader when deleted: {leaders}"
        for result in results:
            if result["pod"] in was_leader:
                assert result["leader_after_pre_stop"] is False, (
                    f"{result['pod']} still led after its preStop: {result}")
        log(f"rolling update: {results}")
        # The client library retries what a planned restart causes (a member going,
        # a leadership handover): no request reaches the application as failed.
        assert stats["failed_attempts"] == "0", f"requests failed during the rollout: {stats}"
        assert service_stats["failed_attempts"] == "0", (
            f"requests through the Service failed during the rollout: {service_stats}")
        load.verify()
        service_load.verify()

    # 4 ------------------------------------------------------------------------------
    def scenario_scale_up(self, a, ordinals, name):
        log(f"== 4. scale up: pods {ordinals} added ({name})")
        load = self.start_load(a, name)
        names = [f"stead-{i}" for i in ordinals]
        a.create_pods(ordinals)
        learners_seen = set()

        def joined():
            try:
                members = self.members(a)["members"]
            except AssertionError:
                return False
            learners_seen.update(m["name"] for m in members if m["is_learner"] and m["name"])
            voters = {m["name"] for m in members if not m["is_learner"]}
            return all(n in voters for n in names) and a.wait_ready(ordinals, 0)
        load.writes_during("the scale-up",
                           lambda: self.wait_for(f"{names} voters and Ready", joined, 180))
        for ordinal in ordinals:
            installed = a.metrics(a.pods[ordinal])["stead_snapshots_installed"]
            assert installed >= 1, f"stead-{ordinal} was not cloned from a checkpoint"
        log(f"scale up: seen as learners: {sorted(learners_seen)}")
        assert learners_seen >= set(names) or self.joined_as_learner(a, ordinals), \
            f"{names} never seen as learners"
        load.stop()
        load.verify()

    def joined_as_learner(self, a, ordinals):
        """Whether each new member's log says the leader added it as a learner
        (promotion can be quicker than `member list` polling). Only a member that joined
        through the leader's learner path logs this line (server/node.cc)."""
        return all(JOINED_AS_LEARNER in a.pods[o].output() for o in ordinals)

    # 5 ------------------------------------------------------------------------------
    def scale_down_by_runbook(self, a, ordinals):
        """docs/scale-down.md: member remove, highest ordinal first, then the pods at
        once, then their volumes."""
        for ordinal in sorted(ordinals, reverse=True):
            name = f"stead-{ordinal}"
            if self.leader_ordinal(a) == ordinal:
                self.steadctl(a, "leader", "transfer")
            self.steadctl(a, "member", "remove", name)
            self.wait_for(f"{name} out of the member list",
                          lambda: name not in {m["name"] for m in self.members(a)["members"]}, 60)
        a.delete_pods(ordinals)
        for ordinal in ordinals:
            a.delete_volumes(ordinal)
        remaining = sorted(a.pods)
        self.steadctl(a, "cluster", "health")
        assert self.voters(a) == [f"stead-{i}" for i in remaining], self.voters(a)

    def scenario_scale_down(self, a):
        log("== 5. scale down 5 -> 3 by the runbook; then up to 5 again")
        load = self.start_load(a, "scale-down")
        load.writes_during("the scale-down", lambda: self.scale_down_by_runbook(a, [3, 4]))
        load.stop()
        load.verify()
        self.scenario_scale_up(a, [3, 4], "scale-up-again")

    # 6 ------------------------------------------------------------------------------
    def content_hash(self, cluster):
        """(hash, revision, keys) once every member applied the same index."""
        def settled():
            out = self.steadctl(cluster, "--output=json", "endpoint", "hash", "--cluster").stdout
            rows = json.loads(out)["endpoints"]
            values = {(r["hash"], r["revision"], r["key_count"]) for r in rows}
            return values.pop() if len(values) == 1 else None
        return self.wait_for("members with one content hash", settled, 30)

    def snapshot_volumes_under_load(self, a):
        """VolumeSnapshots of stead-0's data and WAL volumes for the clone (scenario 8),
        taken as a CSI volume group snapshot takes them of a running member: both at one
        instant while a load writes. stead-0's container is frozen for the copy."""
        load = self.start_load(a, "snapshot")
        # Two checkpoint intervals (500 entries in tests/k8s/emulation) of writes before
        # the copy: a checkpoint that began after every earlier load's last write has
        # then finished, so the copy holds them flushed.
        self.wait_for("writes over two checkpoint intervals",
                      lambda: load.acked_count() >= 1100, 120)
        self.loads_before_snapshot = [earlier for earlier in self.loads if earlier is not load]
        self.volume_snapshots = os.path.join(self.work, "volume-snapshots")
        os.makedirs(self.volume_snapshots)
        pid = a.pods[0].process.pid
        started = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            for claim in ("data-stead-0", "wal-stead-0"):
                subprocess.run(["cp", "-a", os.path.join(a.root, "pvc", claim),
                                os.path.join(self.volume_snapshots, claim)], check=True)
        finally:
            os.kill(pid, signal.SIGCONT)
        acked_at_copy = load.acked_count()
        log(f"stead-0's volumes copied under load in {time.monotonic() - started:.2f} s, "
            f"{acked_at_copy} writes of load snapshot acknowledged by then")
        self.wait_for("writes after the copy",
                      lambda: load.acked_count() >= acked_at_copy + MIN_WRITES_DURING_A_DISRUPTION,
                      60)
        load.stop()
        load.verify()

    def scenario_backup_restore(self, a):
        log("== 6. backup by the CronJob, new cluster from the restore component")
        self.snapshot_volumes_under_load(a)
        source_hash = self.content_hash(a)
        job = a.run_job(k8s.find(a.objects, "CronJob")["spec"]["jobTemplate"]["spec"], 300)
        log(f"backup job exited {job.returncode}: {job.stdout.strip()} {job.stderr.strip()}")
        assert job.returncode == 0, job.stderr
        backups = os.path.join(a.root, "pvc", "stead-backups")
        files = [f for f in os.listdir(backups) if f.endswith(".snap") and not f.startswith(".")]
        assert len(files) == 1, files
        self.source_hash = source_hash
        self.loads_in_backup = list(self.loads)  # all stopped: every write is in it
        self.source_ids = {m["id"] for m in self.members(a)["members"]}
        log("deleting the StatefulSet: every pod at once, PVCs retained")
        a.delete_pods(sorted(a.pods))

        # A new cluster in the same namespace: the user deletes the old PVCs of the
        # initial ordinals and keeps (forgets) those of 3 and 4.
        root_b = os.path.join(self.work, "b")
        os.makedirs(os.path.join(root_b, "pvc"))
        for claim in ("stead-backups", "data-stead-3", "wal-stead-3"):
            subprocess.run(["cp", "-a", os.path.join(a.root, "pvc", claim),
                            os.path.join(root_b, "pvc", claim)], check=True)
        overlay = os.path.join(self.work, "restore-overlay")
        os.makedirs(overlay)
        with open(os.path.join(overlay, "kustomization.yaml"), "w") as out:
            out.write(RESTORE_OVERLAY.format(
                base=os.path.relpath(os.path.join(SOURCE_DIR, "tests/k8s/emulation"), overlay),
                restore=os.path.relpath(os.path.join(SOURCE_DIR, "k8s/components/restore"),
                                        overlay),
                file=files[0]))
        a.down()
        self.clusters.remove(a)
        b = self.new_cluster(overlay, self.args.restore_subnet, f"sk8sb{os.getpid() % 1000}",
                             root_b)
        b.create_pods(range(b.sts["spec"]["replicas"]))
        assert b.wait_ready(range(3), 180), "restored cluster not Ready within 180 s"
        restored_hash = self.content_hash(b)
        log(f"content: source {source_hash}, restored {restored_hash}")
        assert restored_hash == source_hash, (source_hash, restored_hash)
        for load in self.loads_in_backup:
            load.verify(b)
        return b

    # 7 ------------------------------------------------------------------------------
    def scenario_stale_volume(self, b):
        log("== 7. a retained volume of the old cluster under stead-3")
        load = self.start_load(b, "stale")
        b.create_pods([3])
        pod = b.pods[3]
        self.wait_for("stead-3 to report its stale volume",
                      lambda: STALE_VOLUME_MESSAGE in pod.output(),
                      60)
        def readyz_reason():
            answer = b.http_get(pod, "/readyz")
            return answer if answer and STALE_VOLUME_MESSAGE in answer[1] else None
        readyz = self.wait_for("stead-3's /readyz to give the reason", readyz_reason, 30)
        log(f"stead-3 /readyz: {readyz}")
        assert readyz[0] == 503 and not pod.ready, "stead-3 on a stale volume is Ready"
        assert self.voters(b) == ["stead-0", "stead-1", "stead-2"], self.voters(b)
        # Asked directly, the stale member serves not even a serializable read.
        endpoint = f"{b.pod_dns_name(pod)}:{b.port_number(pod.container, 'client')}"
        read = b.run_host([os.path.join(self.bin, "steadctl"), f"--endpoints={endpoint}",
                           *b.tls_flags(), "--timeout=3s", "get", "--serializable",
                           f"{load.prefix}/0"], timeout=30, check=False)
        log(f"serializable get from stead-3: exit {read.returncode}: "
            f"{read.stderr.strip().splitlines()[-1:]}")
        assert read.returncode not in (0, 3), f"stead-3 served a read: {read.stdout}"
        assert STALE_VOLUME_MESSAGE in read.stderr or "unavailable" in read.stderr.lower(), \
            read.stderr
        log("docs/lost-volume.md: delete the pod and its PVCs")
        def runbook():
            b.delete_pods([3])
            b.delete_volumes(3)
            b.create_pods([3])
            self.wait_for("stead-3 a voter and Ready",
                          lambda: "stead-3" in self.voters(b) and b.wait_ready([3], 0), 180)
        load.writes_during("stead-3's runbook", runbook)
        load.stop()
        load.verify()
        self.check_no_restarts(b)
        b.down()
        self.clusters.remove(b)

    # 8 ------------------------------------------------------------------------------
    def scenario_clone(self):
        log("== 8. a new cluster cloned from VolumeSnapshots (k8s/examples/clone)")
        kustomization = os.path.join(SOURCE_DIR, "k8s/examples/clone")
        # Each PVC the example restores from a snapshot gets the snapshot of the old
        # cluster's volume of the same name.
        snapshots = {}
        for pvc in k8s.render(kustomization):
            if pvc["kind"] == "PersistentVolumeClaim" and "dataSource" in pvc["spec"]:
                snapshots[pvc["spec"]["dataSource"]["name"]] = os.path.join(
                    self.volume_snapshots, pvc["metadata"]["name"])
        assert sorted(os.path.basename(p) for p in snapshots.values()) == \
            ["data-stead-0", "wal-stead-0"], snapshots
        c = self.new_cluster(kustomization, self.args.clone_subnet, f"sk8sc{os.getpid() % 1000}",
                             os.path.join(self.work, "c"), snapshots)
        c.create_pods(range(c.sts["spec"]["replicas"]))
        assert c.wait_ready(range(3), 180), "cloned cluster not Ready within 180 s"
        self.check_no_restarts(c)
        # The clone holds stead-0's state machine as of its last flush before the copy:
        # fewer keys than the source at the end, every earlier load's writes (below).
        clone_hash = self.content_hash(c)
        log(f"content: source {self.source_hash}, clone {clone_hash}")
        assert 0 < clone_hash[2] <= self.source_hash[2], (self.source_hash, clone_hash)
        ids = {m["id"] for m in self.members(c)["members"]}
        assert len(ids) == 3 and not ids & self.source_ids, (ids, self.source_ids)
        assert "re-identif" in c.pods[0].output(), "stead-0 of the clone did not re-identify"
        self.check_tls_on(c)
        load = self.start_load(c, "clone")
        was_leader = c.is_leader(c.pods[0])  # its metrics, over HTTPS
        assert was_leader is not None, "the clone's stead-0 serves no metrics over HTTPS"
        deleted = c.delete_pods([0])[0]
        assert deleted["exit_code"] == 0 and not deleted["killed"], deleted
        if was_leader:  # the preStop hook's steadctl speaks TLS to its member
            assert deleted["leader_after_pre_stop"] is False, deleted
        c.create_pods([0])
        assert c.wait_ready([0], 120), "the clone's stead-0 not Ready after a restart"
        assert {m["id"] for m in self.members(c)["members"]} == ids, "restart changed identities"
        load.stop()
        load.verify()
        for earlier in self.loads_before_snapshot:
            earlier.verify(c)
        self.check_no_restarts(c)

    def check_tls_on(self, c):
        """The members speak only TLS, with client certificates required on the client
        port, and serve /readyz over HTTPS with a certificate that names them."""
        tls = c.tool_tls()
        assert tls and set(tls) == {"cacert", "cert", "key"}, f"no TLS for the tools: {tls}"
        pod = c.pods[1]
        endpoint = f"{c.pod_dns_name(pod)}:{c.port_number(pod.container, 'client')}"
        started = time.monotonic()
        refusals = {"plain": [], "TLS without a client certificate": [f"--cacert={tls['cacert']}"]}
        steadctl = os.path.join(self.bin, "steadctl")
        refused = {name: subprocess.Popen(  # at once: each retries until its deadline
            c.host_command([steadctl, f"--endpoints={endpoint}", *flags, "--timeout=1s",
                            "member", "list"]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True) for name, flags in refusals.items()}
        for name, process in refused.items():
            out, err = process.communicate(timeout=30)
            log(f"steadctl to {endpoint}, {name}: exit {process.returncode}: "
                f"{err.strip().splitlines()[-1:]}")
            assert process.returncode != 0, f"{name}: a member answered: {out}"
        members = json.loads(self.steadctl(c, "--output=json", "member", "list",
                                           endpoint=endpoint).stdout)["members"]
        assert len(members) == 3, members
        readyz = c.http_get(pod, "/readyz", scheme="HTTPS")
        assert readyz and readyz[0] == 200, f"{pod.name} HTTPS /readyz: {readyz}"
        plain = c.http_get(pod, "/readyz", scheme="HTTP")
        assert plain is None or plain[0] >= 400, f"{pod.name} answers plain HTTP: {plain}"
        log(f"TLS on: plain and certificate-less clients refused, HTTPS /readyz {readyz[0]}, "
            f"plain HTTP {plain} ({time.monotonic() - started:.1f} s)")

    def cleanup(self):
        for load in self.loads:
            if load.process.poll() is None:
                load.process.kill()
        for cluster in self.clusters:
            cluster.down()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stead", required=True, help="the stead binary")
    parser.add_argument("--steadctl", required=True, help="the steadctl binary")
    parser.add_argument("--load-tool", required=True, help="the stead-load-check binary")
    parser.add_argument("--netns-script",
                        default=os.path.join(SOURCE_DIR, "tests/tools/netns_cluster.sh"))
    parser.add_argument("--subnet", default="10.79.0.0/24")
    parser.add_argument("--restore-subnet", default="10.79.1.0/24")
    parser.add_argument("--clone-subnet", default="10.79.2.0/24")
    parser.add_argument("--work-root", default="/var/tmp")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if not os.path.exists(args.netns_script):
        skip(f"no {args.netns_script}")
    test = Test(args)
    ok = False
    try:
        test.run()
        ok = True
    finally:
        test.cleanup()
        if ok and not args.keep:
            shutil.rmtree(test.work, ignore_errors=True)
        else:
            print(f"work directory kept: {test.work}")
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
