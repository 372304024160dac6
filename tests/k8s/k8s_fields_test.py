#!/usr/bin/env python3
"""k8s_fields.py, the emulation's table of what it plays: every rendering the
emulation runs passes it, a field or value it does not play raises Unsupported naming
it, no rule of what it leaves aside is stale, and README.md lists exactly those rules.
Needs kubectl (skipped, exit 77, without it); no root."""

import copy
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # nothing written into the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
SOURCE_DIR = os.path.dirname(os.path.dirname(HERE))

import k8s_fields  # noqa: E402
from k8s_cert_manager import Unsupported  # noqa: E402
from k8s_emulator import find, render  # noqa: E402
from statefulset_emulation_test import RESTORE_OVERLAY  # noqa: E402


def renderings():
    """{name: objects} of every kustomization the emulation test runs."""
    with tempfile.TemporaryDirectory() as overlay:
        with open(os.path.join(overlay, "kustomization.yaml"), "w") as out:
            out.write(RESTORE_OVERLAY.format(
                base=os.path.relpath(os.path.join(SOURCE_DIR, "tests/k8s/emulation"), overlay),
                restore=os.path.relpath(os.path.join(SOURCE_DIR, "k8s/components/restore"),
                                        overlay),
                file="stead-20261207T000000Z.backup"))
        restore = render(overlay)
    return {
        "tests/k8s/emulation": render(os.path.join(SOURCE_DIR, "tests/k8s/emulation")),
        "restore overlay": restore,
        "k8s/examples/clone": render(os.path.join(SOURCE_DIR, "k8s/examples/clone")),
    }


class FieldsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.renderings = renderings()

    def test_every_rendering_the_emulation_runs_is_played(self):
        for name, objects in self.renderings.items():
            with self.subTest(name):
                k8s_fields.check_fields(objects)

    def test_the_rolling_updates_template_is_played(self):
        def annotate(sts):
            sts["spec"]["template"]["metadata"]["annotations"] = {"emulation/revision": "2"}
        k8s_fields.check_fields(self.with_statefulset(annotate))

    def assert_unsupported(self, objects, *fragments):
        with self.assertRaises(Unsupported) as raised:
            k8s_fields.check_fields(objects)
        for fragment in fragments:
            self.assertIn(fragment, str(raised.exception))

    def with_statefulset(self, change):
        objects = copy.deepcopy(self.renderings["tests/k8s/emulation"])
        change(find(objects, "StatefulSet"))
        return objects

    def test_a_field_nobody_plays_is_named(self):
        def host_network(sts):
            sts["spec"]["template"]["spec"]["hostNetwork"] = True
        self.assert_unsupported(self.with_statefulset(host_network), "StatefulSet/stead",
                                "spec.template.spec.hostNetwork")

        def exec_probe(sts):
            sts["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = {
                "exec": {"command": ["true"]}}
        self.assert_unsupported(self.with_statefulset(exec_probe), "livenessProbe.exec.command[]")

    def test_a_played_field_with_a_value_it_cannot_play_is_named(self):
        def partition(sts):
            sts["spec"]["updateStrategy"]["rollingUpdate"] = {"partition": 2}
        self.assert_unsupported(self.with_statefulset(partition),
                                "spec.updateStrategy.rollingUpdate.partition: 2")

        def ordered(sts):
            sts["spec"]["podManagementPolicy"] = "OrderedReady"
        self.assert_unsupported(self.with_statefulset(ordered), "'OrderedReady'")

        def capability(sts):
            sts["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"] = {
                "drop": ["NET_RAW"]}
        self.assert_unsupported(self.with_statefulset(capability), "'NET_RAW'")

    def test_every_rule_left_aside_is_used_by_a_rendering(self):
        used = set()
        for objects in self.renderings.values():
            for obj in objects:
                for path, _ in k8s_fields.leaves(obj):
                    rule = k8s_fields.rule_for(obj["kind"], path)
                    if rule and rule[0] == "not played":
                        used.add(rule[1])
        stale = [f"{rule[0]} {rule[1]}" for rule in k8s_fields.NOT_PLAYED if rule not in used]
        self.assertEqual(stale, [], "rules no rendering needs (remove them and their README "
                                    "line), or rules shadowed by an earlier one")

    def test_the_readme_lists_exactly_what_is_not_played(self):
        with open(os.path.join(HERE, "README.md")) as readme:
            text = readme.read()
        begin, end = "<!-- not-played: begin -->\n", "<!-- not-played: end -->"
        self.assertIn(begin, text)
        listed = text.split(begin, 1)[1].split(end, 1)[0]
        self.assertEqual(listed, k8s_fields.not_played_markdown(),
                         "run `python3 tests/k8s/k8s_fields.py` and put its output in README.md")


if __name__ == "__main__":
    if shutil.which("kubectl") is None:
        print("SKIP: kubectl not found (needed to render the manifests)")
        sys.exit(77)
    if subprocess.run(["kubectl", "version", "--client"], capture_output=True).returncode != 0:
        print("SKIP: kubectl does not run")
        sys.exit(77)
    unittest.main()
