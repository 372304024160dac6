// The validator's own tests (node --test): the good fixture validates clean, each bad
// fixture reports exactly its one defect (position, object, path, check and message), and
// the command line keeps its contract (exit codes, stdin, --strict, --skip-kind).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cronError } from '../lib/rules.mjs';
import { dns1035Label, dns1123Subdomain, ianaServiceName, qualifiedName } from '../lib/names.mjs';
import { formatProblem, validateSources } from '../lib/validator.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const fixtures = join(here, 'fixtures');
const cli = join(here, '..', 'validate.mjs');

const source = (path) => ({ name: basename(path), text: readFileSync(path, 'utf8') });
const text = (yaml) => [{ name: 'inline.yaml', text: yaml }];

function run(args, input) {
  const result = spawnSync(process.execPath, [cli, ...args],
    { input: input ?? '', encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, out: result.stdout, err: result.stderr };
}

// Each bad fixture: where and what it must report, and a part of the message.
const BAD = [
  ['cron-schedule', '7:13 error CronJob/kv-backup /spec/schedule [cron-schedule]',
    "schedule: a time zone in the schedule is refused: use"],
  ['duplicate-object', '15:9 error PodDisruptionBudget/kv /metadata/name [duplicate-object]',
    "PodDisruptionBudget/kv is defined twice (first at"],
  ['headless-service', '8:14 error Service/kv-peers /spec/clusterIP [headless-service]',
    "a headless Service (clusterIP None) must be of type"],
  ['labels', '28:15 error StatefulSet/kv /spec/template/metadata/labels/team [labels]',
    "label value \"storage team\" must be empty or at most 63"],
  ['name-dns1035', '5:9 error Service/2kv /metadata/name [name]',
    "\"2kv\" is not a DNS-1035 label (lower-case letters, digits"],
  ['name-dns1123', '17:9 error StatefulSet/Kv /metadata/name [name]',
    "\"Kv\" is not a DNS-1123 label (lower-case letters, digits"],
  ['name-port', '35:17 error StatefulSet/kv /spec/template/spec/containers/0/ports/1/name [name]',
    "port name \"metrics-exporter-http\" is longer than 15"],
  ['pdb-both', '8:19 error PodDisruptionBudget/kv /spec/maxUnavailable [pdb]',
    "minAvailable and maxUnavailable cannot both be set"],
  ['probe-handlers', '36:11 error StatefulSet/kv /spec/template/spec/containers/0/readinessProbe [probe]',
    "readinessProbe must have exactly one handler (exec,"],
  ['probe-success-threshold', '38:29 error StatefulSet/kv /spec/template/spec/containers/0/livenessProbe/successThreshold [probe]',
    "livenessProbe successThreshold must be 1, is 2"],
  ['pvc-access-modes', '7:3 error PersistentVolumeClaim/kv-backups /spec [pvc]',
    "a claim needs at least one accessMode"],
  ['restart-policy-cronjob', '12:26 error CronJob/kv-backup /spec/jobTemplate/spec/template/spec/restartPolicy [restart-policy]',
    "restartPolicy \"Always\" must be OnFailure or Never here"],
  ['restart-policy-job', '9:7 error Job/kv-verify /spec/template/spec [restart-policy]',
    "restartPolicy defaults to Always; must be OnFailure or"],
  ['schema-crd', '7:17 error VolumeSnapshotClass/kv-snapshots /deletionPolicy [schema]',
    "\"Keep\" is not one of \"Delete\", \"Retain\""],
  ['schema-enum', '21:24 error StatefulSet/kv /spec/podManagementPolicy [schema]',
    "\"Paralel\" is not one of \"OrderedReady\", \"Parallel\""],
  ['schema-int-or-string', '7:19 error PodDisruptionBudget/kv /spec/maxUnavailable [schema]',
    "must be of type string or integer, got boolean"],
  ['schema-metric-prefix', '37:21 error StatefulSet/kv /spec/template/spec/containers/0/resources/requests/memory [schema]',
    "\"1h\" does not match format \"quantity\""],
  ['schema-quantity', '48:20 error StatefulSet/kv /spec/volumeClaimTemplates/0/spec/resources/requests/storage [schema]',
    "\"10GB\" does not match format \"quantity\""],
  ['schema-required', '30:9 error StatefulSet/kv /spec/template/spec/containers/0 [schema]',
    "missing required field \"name\""],
  ['schema-type', '20:13 error StatefulSet/kv /spec/replicas [schema]',
    "must be of type integer, got string"],
  ['schema-yaml11', '7:15 error ConfigMap/kv-flags /data/compaction [schema]',
    "must be of type string, got boolean"],
  ['selector-mismatch', '27:9 error StatefulSet/kv /spec/template/metadata/labels [selector]',
    "template labels do not match spec.selector"],
  ['service-port-names', '12:5 error Service/kv /spec/ports/1 [service]',
    "each port needs a name when there are several"],
  ['snapshot-source', '8:5 error VolumeSnapshot/kv-data-0 /spec/source [snapshot-source]',
    "exactly one of persistentVolumeClaimName,"],
  ['unique-container-name', '32:15 error StatefulSet/kv /spec/template/spec/containers/1/name [unique-name]',
    "container name \"stead\" is used twice"],
  ['unique-port-name', '35:17 error StatefulSet/kv /spec/template/spec/containers/0/ports/1/name [unique-name]',
    "port name \"peer\" is used twice"],
  ['unique-volume-name', '44:15 error StatefulSet/kv /spec/template/spec/volumes/1/name [unique-name]',
    "volume name \"tmp\" is used twice"],
  ['unknown-field-container', '31:9 error StatefulSet/kv /spec/template/spec/containers/0/imagePullPolcy [unknown-field]',
    "unknown field \"imagePullPolcy\""],
  ['unknown-field-crd', '7:3 error VolumeSnapshot/kv-data-0 /spec/volumeSnapshotClass [unknown-field]',
    "unknown field \"volumeSnapshotClass\""],
  ['unknown-field-metadata', '26:7 error StatefulSet/kv /spec/template/metadata/label [unknown-field]',
    "unknown field \"label\""],
  ['unknown-field-misplaced', '29:7 error StatefulSet/kv /spec/template/spec/serviceName [unknown-field]',
    "unknown field \"serviceName\""],
  ['unknown-field-probe', '36:11 error StatefulSet/kv /spec/template/spec/containers/0/readinessProbe/periodSecond [unknown-field]',
    "unknown field \"periodSecond\""],
  ['unknown-field-spec', '20:3 error StatefulSet/kv /spec/replica [unknown-field]',
    "unknown field \"replica\""],
  ['unknown-kind', '15:7 error StatefulSet/kv /kind [kind]',
    "no schema for apps/v1beta3 StatefulSet (Kubernetes 1.33 and"],
  ['volume-mount', '41:17 error StatefulSet/kv /spec/template/spec/containers/0/volumeMounts/1/name [volume-mount]',
    "volumeMount \"wal\" names no volume or volumeClaimTemplate"],
  ['warning-probe-port', '37:19 warning StatefulSet/kv /spec/template/spec/containers/0/readinessProbe/tcpSocket/port [probe-port]',
    "readinessProbe uses port \"client\", which the container does"],
  ['warning-service-missing', '7:16 warning StatefulSet/kv /spec/serviceName [service-name]',
    "serviceName \"kv-peer\" names no Service of these manifests"],
  ['warning-service-not-headless', '18:16 warning StatefulSet/kv /spec/serviceName [service-name]',
    "serviceName \"kv-peers\" names a Service that is not headless"],
  ['warning-unmounted-claim', '50:13 warning StatefulSet/kv /spec/volumeClaimTemplates/1/metadata/name [unmounted-claim]',
    "volumeClaimTemplate \"wal\" is mounted by no container: each"],
  ['yaml-duplicate-key', '8:3 error document 1 / [yaml]',
    "Map keys must be unique"],
];

test('the good fixture validates with no problem', async () => {
  const { problems, objects } = await validateSources([source(join(fixtures, 'good', 'cluster.yaml'))]);
  assert.deepEqual(problems.map(formatProblem), []);
  assert.equal(objects, 19);
});

test('every bad fixture has its expectation', () => {
  const files = readdirSync(join(fixtures, 'bad')).map((f) => f.replace(/\.yaml$/, '')).sort();
  assert.deepEqual(files, BAD.map(([name]) => name).sort());
});

for (const [name, expected, message] of BAD) {
  test(`bad/${name}.yaml reports ${expected}`, async () => {
    const { problems } = await validateSources([source(join(fixtures, 'bad', `${name}.yaml`))]);
    assert.deepEqual(problems.map((p) => `${p.line}:${p.col} ${p.severity} ${p.object} ${p.path} [${p.check}]`),
      [expected], problems.map(formatProblem).join('\n'));
    assert.ok(problems[0].message.startsWith(message), problems[0].message);
  });
}

test('unknown fields are found at any depth and in several places at once', async () => {
  const { problems } = await validateSources(text(`apiVersion: v1
kind: Service
metadata:
  name: kv
  labls: {app: kv}
spec:
  selector: {app: kv}
  ports:
  - {name: client, port: 2479, targetPort: client, protocl: TCP}
  sessionAffinityConfig:
    clientIP: {timeoutSecond: 10}
`));
  assert.deepEqual(problems.map((p) => `${p.line}:${p.col} ${p.path} [${p.check}]`), [
    '5:3 /metadata/labls [unknown-field]',
    '9:52 /spec/ports/0/protocl [unknown-field]',
    '11:16 /spec/sessionAffinityConfig/clientIP/timeoutSecond [unknown-field]',
  ]);
});

test('free-form maps (labels, data, parameters) take any key', async () => {
  const { problems } = await validateSources(text(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: fast
  labels: {anything.example.com/at-all: "yes"}
  annotations: {note: free text}
provisioner: ebs.csi.aws.com
parameters: {any_key: value, another: "1"}
`));
  assert.deepEqual(problems.map(formatProblem), []);
});

test('YAML is decoded as the API server does: 1.1 booleans and octal, dates as strings', async () => {
  const { problems } = await validateSources(text(`apiVersion: v1
kind: ConfigMap
metadata:
  name: kv
  annotations: {since: 2024-05-01, at: 12:30}
data: {mode: "0644", enabled: "yes"}
---
apiVersion: v1
kind: Secret
metadata:
  name: kv
data: {}
stringData: {flag: y}
`));
  assert.deepEqual(problems.map((p) => `${p.path} ${p.message}`),
    ['/stringData/flag must be of type string, got boolean']);
});

test('quantities follow the API server grammar', async () => {
  const claim = (storage) => text(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: c}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: ${storage}}}
`);
  for (const good of ['100Gi', '1.5', '2e10', '500m', '1E3', '12', '0.5Ti', '+1k']) {
    const { problems } = await validateSources(claim(good));
    assert.deepEqual(problems.map(formatProblem), [], good);
  }
  for (const bad of ['10GB', '1h', '1da', '5gi', '1e1.5', 'Gi', '1 Gi']) {
    const { problems } = await validateSources(claim(`"${bad}"`));
    assert.deepEqual(problems.map((p) => p.path), ['/spec/resources/requests/storage'], bad);
  }
});

test('objects of several sources form one set', async () => {
  const pdb = source(join(fixtures, 'bad', 'pdb-both.yaml'));
  const { problems } = await validateSources([
    { name: 'a.yaml', text: 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: kv, namespace: kv}\n' },
    { name: 'b.yaml', text: 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: kv, namespace: kv}\n' },
    { name: 'c.yaml', text: 'apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: kv, namespace: other}\n' },
    pdb,
  ]);
  assert.deepEqual(problems.map((p) => `${p.source} ${p.check}`),
    ['b.yaml duplicate-object', 'pdb-both.yaml pdb']);
});

test('cron schedules', () => {
  for (const good of ['17 3 * * *', '*/15 0-6,22 1 jan-mar mon', '0 0 ? * SUN', '@daily', '@every 2h']) {
    assert.equal(cronError(good), null, good);
  }
  for (const bad of ['17 3 * *', '60 * * * *', '0 24 * * *', '0 0 0 * *', '0 0 * 13 *',
    '0 0 * * 7', '*/0 * * * *', 'TZ=UTC 0 0 * * *', '? * * * *', '0 0 * * mon-sun']) {
    assert.notEqual(cronError(bad), null, bad);
  }
});

test('name formats', () => {
  assert.equal(dns1123Subdomain('stead-0.stead-peers'), null);
  assert.notEqual(dns1123Subdomain('Stead'), null);
  assert.notEqual(dns1123Subdomain('stead-'), null);
  assert.equal(dns1035Label('stead-peers'), null);
  assert.notEqual(dns1035Label('0stead'), null);
  assert.equal(ianaServiceName('http-2'), null);
  for (const bad of ['2480', 'peer--2', '-peer', 'PEER', 'a-very-long-port-name']) {
    assert.notEqual(ianaServiceName(bad), null, bad);
  }
  assert.equal(qualifiedName('app.kubernetes.io/name'), null);
  assert.notEqual(qualifiedName('App_/name'), null);
  assert.notEqual(qualifiedName('example.com/'), null);
});

test('command line: clean input exits 0 with a summary', () => {
  const { code, out } = run(['--strict', join(fixtures, 'good', 'cluster.yaml')]);
  assert.equal(code, 0, out);
  assert.equal(out, 'OK: 19 object(s) checked, 0 error(s), 0 warning(s)\n');
});

test('command line: errors exit 1, reported as file:line:col', () => {
  const file = join(fixtures, 'bad', 'unknown-field-spec.yaml');
  const { code, out } = run([file]);
  assert.equal(code, 1);
  assert.equal(out, `${file}:20:3: error: StatefulSet/kv: /spec/replica: unknown field "replica" ` +
    '[unknown-field]\nFAIL: 2 object(s) checked, 1 error(s), 0 warning(s)\n');
});

test('command line: reads stdin when given no file or -', () => {
  const input = readFileSync(join(fixtures, 'bad', 'schema-type.yaml'), 'utf8');
  for (const args of [[], ['-']]) {
    const { code, out } = run(args, input);
    assert.equal(code, 1);
    assert.match(out, /^stdin:20:13: error: StatefulSet\/kv: \/spec\/replicas: /);
  }
});

test('command line: warnings fail only with --strict', () => {
  const file = join(fixtures, 'bad', 'warning-unmounted-claim.yaml');
  assert.equal(run([file]).code, 0);
  const strict = run(['--strict', file]);
  assert.equal(strict.code, 1);
  assert.match(strict.out, /FAIL: 2 object\(s\) checked, 0 error\(s\), 1 warning\(s\)\n$/);
});

test('command line: --skip-kind accepts a kind without schema, and only that kind', () => {
  const certificate = `apiVersion: cert-manager.io/v1
kind: Certificate
metadata: {name: kv-peer}
spec: {secretName: kv-peer-tls, issuerRef: {name: kv-ca}}
`;
  const unskipped = run([], certificate);
  assert.equal(unskipped.code, 1);
  assert.match(unskipped.out, /stdin:2:7: error: Certificate\/kv-peer: \/kind: no schema .* \[kind\]/);
  assert.equal(run(['--skip-kind', 'cert-manager.io/v1/Certificate'], certificate).code, 0);
  assert.equal(run(['--skip-kind=Certificate'], certificate).code, 0);
  assert.equal(run(['--skip-kind', 'cert-manager.io/v1alpha2/Certificate'], certificate).code, 1);
  assert.equal(run(['--skip-kind', 'cert-manager.io/v1/Issuer'], certificate).code, 1);
  // A skipped kind's name is still checked.
  const badName = run(['--skip-kind', 'Certificate'], certificate.replace('kv-peer}', 'KV}'));
  assert.equal(badName.code, 1);
  assert.match(badName.out, /\/metadata\/name: .* \[name\]/);
});

test('command line: usage and input errors exit 2', () => {
  const unknown = run(['--no-such-option']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /unknown option --no-such-option/);
  assert.equal(run(['--skip-kind']).code, 2);
  const missing = run([join(fixtures, 'no-such-file.yaml')]);
  assert.equal(missing.code, 2);
  assert.match(missing.err, /cannot read .*no-such-file\.yaml/);
});
