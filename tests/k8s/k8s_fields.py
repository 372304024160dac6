"""Which fields of the rendered manifests the StatefulSet emulation plays.

Every leaf field of every object the emulation is given must match a rule here: a
field it PLAYS (acts on, sometimes only with the values it can play), or one it
knowingly does NOT PLAY, with the reason. Anything else raises Unsupported when a
cluster is created, so a manifest change the emulation cannot follow fails the test
instead of passing unseen. tests/k8s/README.md lists the NOT_PLAYED rules as
`python3 k8s_fields.py` prints them; k8s_fields_test.py keeps the two equal.

Paths are dotted, with `[]` for a list item; in patterns `*` matches any text (dots
included) and everything else is literal.
"""

import re

from k8s_cert_manager import Unsupported

POD = "spec.template.spec"
JOB_POD = "spec.jobTemplate.spec.template.spec"
CONTAINERS = ("containers[]", "initContainers[]")

# What the emulator plays of a container (k8s_emulator.PodRuntime and Cluster.user_args).
CONTAINER_FIELDS = (
    "name", "command[]", "args[]",
    "env[].name", "env[].value", "env[].valueFrom.fieldRef.fieldPath",
    "env[].valueFrom.resourceFieldRef.*",
    "volumeMounts[].name", "volumeMounts[].mountPath", "volumeMounts[].readOnly",
    "securityContext.runAsUser", "securityContext.runAsGroup", "securityContext.runAsNonRoot",
    "securityContext.allowPrivilegeEscalation", "securityContext.capabilities.drop[]",
    "securityContext.readOnlyRootFilesystem",
)
POD_FIELDS = (
    "securityContext.runAsUser", "securityContext.runAsGroup", "securityContext.runAsNonRoot",
    "securityContext.fsGroup", "securityContext.fsGroupChangePolicy",
    "volumes[].name", "volumes[].emptyDir {}", "volumes[].secret.secretName",
    "volumes[].secret.optional", "volumes[].secret.defaultMode",
    "volumes[].persistentVolumeClaim.claimName", "volumes[].persistentVolumeClaim.readOnly",
)
PROBE_FIELDS = ("httpGet.path", "httpGet.port", "httpGet.scheme", "initialDelaySeconds",
                "periodSeconds", "timeoutSeconds", "failureThreshold")

# (kinds, pattern) the emulator acts on; kinds "*" is every kind.
PLAYED = [
    ("*", "apiVersion"), ("*", "kind"), ("*", "metadata.name"), ("*", "metadata.namespace"),
    # The client Service's pods: those whose template labels its selector matches.
    ("StatefulSet", "spec.template.metadata.labels.*"),
    # Any change of the template, an annotation's too, is a revision to roll out.
    ("StatefulSet", "spec.template.metadata.annotations.*"),
    ("Service", "spec.selector.*"),
    # The StatefulSet controller.
    ("StatefulSet", "spec.replicas"),
    ("StatefulSet", "spec.serviceName"),
    ("StatefulSet", "spec.podManagementPolicy"),
    ("StatefulSet", "spec.updateStrategy.type"),
    ("StatefulSet", "spec.updateStrategy.rollingUpdate.partition"),
    ("StatefulSet", "spec.minReadySeconds"),
    ("StatefulSet", "spec.persistentVolumeClaimRetentionPolicy.*"),
    ("StatefulSet", "spec.volumeClaimTemplates[].metadata.name"),
    # The kubelet: containers, volumes, users, probes, memory and termination.
    *[("StatefulSet", f"{POD}.{c}.{field}") for c in CONTAINERS for field in CONTAINER_FIELDS],
    *[("StatefulSet", f"{POD}.{field}") for field in POD_FIELDS],
    *[("StatefulSet", f"{POD}.containers[].{probe}.{field}")
      for probe in ("startupProbe", "livenessProbe", "readinessProbe") for field in PROBE_FIELDS],
    ("StatefulSet", f"{POD}.containers[].ports[].name"),
    ("StatefulSet", f"{POD}.containers[].ports[].containerPort"),
    ("StatefulSet", f"{POD}.containers[].resources.limits.memory"),
    ("StatefulSet", f"{POD}.containers[].lifecycle.preStop.exec.command[]"),
    ("StatefulSet", f"{POD}.terminationGracePeriodSeconds"),
    # The CronJob's job, run once on the host side.
    *[("CronJob", f"{JOB_POD}.containers[].{field}") for field in CONTAINER_FIELDS],
    *[("CronJob", f"{JOB_POD}.{field}") for field in POD_FIELDS],
    ("CronJob", f"{JOB_POD}.restartPolicy"),
    # Services: the headless one is the namespaces' DNS names (not-ready pods
    # included), a client one the host's TCP proxy to Ready pods.
    ("Service", "spec.clusterIP"),
    ("Service", "spec.publishNotReadyAddresses"),
    ("Service", "spec.type"),
    ("Service", "spec.ports[].name"),
    ("Service", "spec.ports[].port"),
    ("Service", "spec.ports[].targetPort"),
    # PVCs: a directory each; a VolumeSnapshot dataSource starts as a copy.
    ("PersistentVolumeClaim", "spec.dataSource.*"),
    # cert-manager objects: k8s_cert_manager.py checks their specs field by field.
    ("Certificate", "spec.*"), ("Issuer", "spec.*"), ("ClusterIssuer", "spec.*"),
]

# Values the emulator can play of a PLAYED field; any other value is Unsupported.
ONLY_VALUES = {
    ("StatefulSet", "spec.podManagementPolicy"): {"Parallel"},
    ("StatefulSet", "spec.updateStrategy.type"): {"RollingUpdate"},
    ("StatefulSet", "spec.updateStrategy.rollingUpdate.partition"): {0},
    ("StatefulSet", "spec.persistentVolumeClaimRetentionPolicy.*"): {"Retain"},
    ("StatefulSet", f"{POD}.securityContext.fsGroupChangePolicy"): {"OnRootMismatch"},
    ("CronJob", f"{JOB_POD}.securityContext.fsGroupChangePolicy"): {"OnRootMismatch"},
    ("CronJob", f"{JOB_POD}.restartPolicy"): {"Never", "OnFailure"},
    ("Service", "spec.type"): {"ClusterIP"},
    ("Service", "spec.clusterIP"): {"None"},
    ("Service", "spec.publishNotReadyAddresses"): {True},
    (("StatefulSet", "CronJob"), "*.securityContext.capabilities.drop[]"): {"ALL"},
    ("PersistentVolumeClaim", "spec.dataSource.kind"): {"VolumeSnapshot"},
}

# (kinds, pattern, why the emulation leaves it aside). README.md lists these.
NOT_PLAYED = [
    ("Namespace", "metadata.labels.*", "no admission control is played"),
    ("*", "metadata.labels.*", "objects are found by name and kind, pods by the template's labels"),
    ("StatefulSet", "spec.selector.matchLabels.*",
     "the controller's pods are those it creates (the validator checks the selector matches "
     "the template)"),
    ("StatefulSet", "spec.revisionHistoryLimit", "no rollback is played"),
    ("StatefulSet", "spec.volumeClaimTemplates[].metadata.labels.*",
     "PVCs are directories, found by name"),
    ("StatefulSet", "spec.volumeClaimTemplates[].spec.*",
     "a PVC is a directory: no storage class, access mode or size limit"),
    ("PersistentVolumeClaim", "spec.accessModes[]", "a PVC is a directory"),
    ("PersistentVolumeClaim", "spec.storageClassName", "a PVC is a directory"),
    ("PersistentVolumeClaim", "spec.resources.requests.storage",
     "a PVC is a directory without a size limit"),
    (("StatefulSet", "CronJob"), "*.containers[].image",
     "the binaries under test stand for the image"),
    (("StatefulSet", "CronJob"), "*.initContainers[].image",
     "the binaries under test stand for the image"),
    (("StatefulSet", "CronJob"), "*.imagePullPolicy", "no image is pulled"),
    (("StatefulSet", "CronJob"), "*.resources.requests.*",
     "requests only place pods on nodes; there is one host"),
    ("StatefulSet", f"{POD}.initContainers[].resources.limits.memory",
     "an init container's memory is not watched (the main container's is)"),
    ("CronJob", f"{JOB_POD}.containers[].resources.limits.memory",
     "a job's memory is not watched"),
    ("StatefulSet", f"{POD}.affinity.*", "scheduling across nodes; there is one host"),
    ("StatefulSet", f"{POD}.topologySpreadConstraints[].*",
     "scheduling across zones; there is one host"),
    (("StatefulSet", "CronJob"), "*.securityContext.seccompProfile.type",
     "no seccomp filter is installed"),
    (("StatefulSet", "CronJob"), "*.serviceAccountName", "there is no API server"),
    (("StatefulSet", "CronJob", "ServiceAccount"), "*automountServiceAccountToken",
     "there is no API server, hence no token to mount"),
    (("StatefulSet", "CronJob"), "*.enableServiceLinks",
     "no Service environment variables are made either way"),
    ("CronJob", "spec.schedule", "the test runs the job template when a scenario needs it"),
    ("CronJob", "spec.timeZone", "the test runs the job template when a scenario needs it"),
    ("CronJob", "spec.startingDeadlineSeconds", "the job is run at once"),
    ("CronJob", "spec.concurrencyPolicy", "one job runs at a time"),
    ("CronJob", "spec.*JobsHistoryLimit", "finished jobs are not kept"),
    ("CronJob", "spec.jobTemplate.spec.backoffLimit",
     "a failed job fails the scenario instead of being retried"),
    ("CronJob", "spec.jobTemplate.spec.activeDeadlineSeconds",
     "the test bounds the job with its own timeout"),
    ("CronJob", "spec.jobTemplate.spec.ttlSecondsAfterFinished", "finished jobs are not kept"),
    ("CronJob", "spec.jobTemplate.spec.template.metadata.labels.*",
     "the job pod is not selected by anything played (only by the NetworkPolicy)"),
    ("NetworkPolicy", "spec.*",
     "the namespaces' bridge lets every member reach every other; the validator checks the "
     "policy admits the peer and client ports"),
    ("PodDisruptionBudget", "spec.*", "no node is drained, so nothing is evicted"),
    (("StatefulSet", "CronJob"), "*.volumes[].emptyDir.sizeLimit",
     "an emptyDir is a directory without a size limit"),
]


def leaves(value, path=""):
    """(path, value) of every leaf of a parsed object; an empty map or list is a leaf
    written `path {}` or `path []`."""
    if isinstance(value, dict):
        if not value:
            yield f"{path} {{}}", value
        for key, item in value.items():
            yield from leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        if not value:
            yield f"{path} []", value
        for item in value:
            yield from leaves(item, f"{path}[]")
    else:
        yield path, value


def _matches(kinds, pattern, kind, path):
    if kinds != "*" and kind not in ((kinds,) if isinstance(kinds, str) else kinds):
        return False
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, path) is not None


def rule_for(kind, path):
    """("played", rule) or ("not played", rule) for one leaf, with the first rule of
    PLAYED or NOT_PLAYED that matches it; None if none does."""
    for rule in PLAYED:
        if _matches(rule[0], rule[1], kind, path):
            return "played", rule
    for rule in NOT_PLAYED:
        if _matches(rule[0], rule[1], kind, path):
            return "not played", rule
    return None


def check_fields(objects):
    """Raises Unsupported naming the first field of `objects` (rendered manifests) that
    the emulation neither plays nor knowingly leaves aside, or a played field with a
    value it cannot play."""
    for obj in objects:
        kind = obj.get("kind", "?")
        where = f"{kind}/{obj.get('metadata', {}).get('name', '?')}"
        for path, value in leaves(obj):
            rule = rule_for(kind, path)
            if rule is None:
                raise Unsupported(f"{where}: {path} (not played by the emulation; play it, or "
                                  f"add it with the reason to k8s_fields.NOT_PLAYED and "
                                  f"tests/k8s/README.md)")
            if rule[0] != "played":
                continue
            allowed = next((values for (kinds, pattern), values in ONLY_VALUES.items()
                            if _matches(kinds, pattern, kind, path)), None)
            if allowed is not None and value not in allowed:
                raise Unsupported(f"{where}: {path}: {value!r} (the emulation plays only "
                                  f"{sorted(allowed, key=str)})")


def not_played_markdown():
    """The README's list of what the emulation does not play, from NOT_PLAYED."""
    lines = []
    for kinds, pattern, reason in NOT_PLAYED:
        names = "every kind" if kinds == "*" else ", ".join(
            (kinds,) if isinstance(kinds, str) else kinds)
        lines.append(f"- `{pattern}` ({names}): {reason}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(not_played_markdown(), end="")
