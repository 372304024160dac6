// API-server rules beyond the schema, per object, for the kinds our manifests use, and
// the run-time warnings that concern one object. Each problem is {segments, message,
// check, severity?} with severity 'error' unless said.
import {
  configKey, dns1035Label, dns1123Label, dns1123Subdomain, ianaServiceName, labelValue,
  qualifiedName,
} from './names.mjs';
import { checkPodSpec, isObject, list, uniqueNames } from './pod.mjs';

const WORKLOADS = new Set(['StatefulSet', 'Deployment', 'ReplicaSet', 'DaemonSet']);

// metadata.name: Services are DNS-1035 labels (they become DNS names and env vars),
// Namespaces and StatefulSets DNS-1123 labels (a StatefulSet's pods take its name plus an
// ordinal as their hostname), everything else DNS-1123 subdomains.
function nameRule(kind) {
  if (kind === 'Service') return dns1035Label;
  if (kind === 'Namespace' || kind === 'StatefulSet') return dns1123Label;
  return dns1123Subdomain;
}

function checkLabels(labels, segments, out) {
  if (!isObject(labels)) return;
  for (const [key, value] of Object.entries(labels)) {
    const bad = qualifiedName(key) ?? (typeof value === 'string' ? labelValue(value) : null);
    if (bad) out.push({ segments: [...segments, key], message: bad, check: 'labels' });
  }
}

function checkMetadata(object, out) {
  const metadata = isObject(object.metadata) ? object.metadata : {};
  if (metadata.name === undefined) {
    if (metadata.generateName === undefined) {
      out.push({ segments: ['metadata'], message: 'missing metadata.name', check: 'name' });
    }
  } else if (typeof metadata.name === 'string') {  // else a schema error
    const bad = nameRule(object.kind)(metadata.name);
    if (bad) out.push({ segments: ['metadata', 'name'], message: bad, check: 'name' });
  }
  if (typeof metadata.namespace === 'string') {
    const bad = dns1123Label(metadata.namespace);
    if (bad) out.push({ segments: ['metadata', 'namespace'], message: bad, check: 'name' });
  }
  checkLabels(metadata.labels, ['metadata', 'labels'], out);
  if (isObject(metadata.annotations)) {
    for (const key of Object.keys(metadata.annotations)) {
      const bad = qualifiedName(key);
      if (bad) out.push({ segments: ['metadata', 'annotations', key], message: bad, check: 'labels' });
    }
  }
}

// Whether a LabelSelector selects a set of labels.
export function selects(selector, labels) {
  const has = (key) => Object.prototype.hasOwnProperty.call(labels, key);
  for (const [key, value] of Object.entries(selector.matchLabels ?? {})) {
    if (!has(key) || labels[key] !== value) return false;
  }
  for (const { key, operator, values = [] } of list(selector.matchExpressions)) {
    const ok = {
      In: () => has(key) && values.includes(labels[key]),
      NotIn: () => !has(key) || !values.includes(labels[key]),
      Exists: () => has(key),
      DoesNotExist: () => !has(key),
    }[operator];
    if (!ok || !ok()) return false;
  }
  return true;
}

function checkWorkloadSelector(spec, out) {
  const selector = spec.selector;
  if (!isObject(selector)) return;  // a missing selector is a schema error
  const empty = Object.keys(selector.matchLabels ?? {}).length === 0 &&
    list(selector.matchExpressions).length === 0;
  if (empty) {
    out.push({ segments: ['spec', 'selector'], check: 'selector',
      message: 'empty selector: it must select the pod template\'s labels' });
    return;
  }
  checkLabels(selector.matchLabels, ['spec', 'selector', 'matchLabels'], out);
  const labels = spec.template?.metadata?.labels;
  if (!selects(selector, isObject(labels) ? labels : {})) {
    out.push({ segments: ['spec', 'template', 'metadata', 'labels'], check: 'selector',
      message: 'template labels do not match spec.selector' });
  }
}

// A PersistentVolumeClaim's spec, alone or as a volumeClaimTemplate.
function checkClaimSpec(spec, segments, out) {
  if (!isObject(spec)) return;
  const modes = list(spec.accessModes);
  if (modes.length === 0) {
    out.push({ segments, message: 'a claim needs at least one accessMode', check: 'pvc' });
  } else if (modes.includes('ReadWriteOncePod') && modes.length > 1) {
    out.push({ segments: [...segments, 'accessModes'], check: 'pvc',
      message: 'ReadWriteOncePod cannot be combined with other access modes' });
  }
  if (spec.resources?.requests?.storage === undefined) {
    out.push({ segments: spec.resources ? [...segments, 'resources'] : segments, check: 'pvc',
      message: 'a claim needs resources.requests.storage' });
  }
}

// A pod template: its labels and its pod spec. Returns the names its containers mount.
function checkTemplate(template, segments, options, out) {
  if (!isObject(template)) return new Set();
  checkLabels(template.metadata?.labels, [...segments, 'metadata', 'labels'], out);
  return checkPodSpec(template.spec, [...segments, 'spec'], options, out);
}

function checkStatefulSet(object, out) {
  const spec = object.spec;
  const templates = list(spec.volumeClaimTemplates);
  const claims = new Set();
  templates.forEach((template, i) => {
    const at = ['spec', 'volumeClaimTemplates', String(i)];
    const name = template?.metadata?.name;
    if (name === undefined) {
      out.push({ segments: [...at, 'metadata'], message: 'a volumeClaimTemplate needs metadata.name',
        check: 'name' });
    } else if (typeof name === 'string') {
      const bad = dns1123Label(name);
      if (bad) out.push({ segments: [...at, 'metadata', 'name'], message: bad, check: 'name' });
    }
    if (typeof name === 'string') claims.add(name);
    checkLabels(template?.metadata?.labels, [...at, 'metadata', 'labels'], out);
    checkClaimSpec(template?.spec, [...at, 'spec'], out);
  });
  uniqueNames(templates.map((t, i) => ({ value: t?.metadata?.name,
    segments: ['spec', 'volumeClaimTemplates', String(i), 'metadata', 'name'] })),
  'volumeClaimTemplate', out);
  const mounted = checkTemplate(spec.template, ['spec', 'template'],
    { claims, restartPolicies: ['Always'] }, out);
  templates.forEach((template, i) => {
    const name = template?.metadata?.name;
    if (typeof name === 'string' && !mounted.has(name)) {
      out.push({ segments: ['spec', 'volumeClaimTemplates', String(i), 'metadata', 'name'],
        severity: 'warning', check: 'unmounted-claim',
        message: `volumeClaimTemplate ${JSON.stringify(name)} is mounted by no container: ` +
          'each pod gets a volume nobody uses' });
    }
  });
}

function checkService(object, out) {
  const spec = isObject(object.spec) ? object.spec : {};
  const type = spec.type ?? 'ClusterIP';
  const headless = spec.clusterIP === 'None';
  if (headless && type !== 'ClusterIP') {
    out.push({ segments: ['spec', 'clusterIP'], check: 'headless-service',
      message: `a headless Service (clusterIP None) must be of type ClusterIP, not ${type}` });
  }
  const ips = list(spec.clusterIPs);
  if (spec.clusterIP !== undefined && ips.length > 0 && ips[0] !== spec.clusterIP) {
    out.push({ segments: ['spec', 'clusterIPs'], check: 'headless-service',
      message: 'clusterIPs[0] must equal clusterIP' });
  }
  if (type === 'ExternalName') {
    if (typeof spec.externalName !== 'string') {
      out.push({ segments: ['spec'], message: 'type ExternalName needs externalName', check: 'service' });
    }
    return;
  }
  const ports = list(spec.ports);
  if (ports.length === 0 && !headless) {
    out.push({ segments: ['spec'], message: 'a Service needs at least one port', check: 'service' });
  }
  ports.forEach((port, i) => {
    if (!isObject(port)) return;
    const at = ['spec', 'ports', String(i)];
    if (port.name === undefined) {
      if (ports.length > 1) {
        out.push({ segments: at, message: 'each port needs a name when there are several',
          check: 'service' });
      }
    } else if (typeof port.name === 'string') {
      const bad = dns1123Label(port.name);
      if (bad) out.push({ segments: [...at, 'name'], message: `port name ${bad}`, check: 'name' });
    }
    if (typeof port.targetPort === 'string') {
      const bad = ianaServiceName(port.targetPort);
      if (bad) out.push({ segments: [...at, 'targetPort'], message: bad, check: 'name' });
    }
    for (const field of ['port', 'targetPort', 'nodePort']) {
      const value = port[field];
      if (Number.isInteger(value) && (value < 1 || value > 65535)) {
        out.push({ segments: [...at, field], message: `${field} ${value} is not in 1-65535`,
          check: 'service' });
      }
    }
  });
  uniqueNames(ports.map((p, i) => ({ value: p?.name, segments: ['spec', 'ports', String(i), 'name'] })),
    'port', out);
  uniqueNames(ports.map((p, i) => ({
    value: isObject(p) && p.port !== undefined ? `${p.port}/${p.protocol ?? 'TCP'}` : undefined,
    segments: ['spec', 'ports', String(i), 'port'] })), 'port/protocol', out);
}

function checkDisruptionBudget(object, out) {
  const spec = isObject(object.spec) ? object.spec : {};
  const set = (v) => v !== undefined && v !== null;
  if (set(spec.minAvailable) && set(spec.maxUnavailable)) {
    out.push({ segments: ['spec', 'maxUnavailable'], check: 'pdb',
      message: 'minAvailable and maxUnavailable cannot both be set' });
  }
  for (const field of ['minAvailable', 'maxUnavailable']) {
    const value = spec[field];
    const bad = (typeof value === 'string' && !/^[0-9]+%$/.test(value)) ||
      (Number.isInteger(value) && value < 0);
    if (bad) {
      out.push({ segments: ['spec', field], check: 'pdb',
        message: `${field} must be a non-negative integer or a percentage like "50%", ` +
          `is ${JSON.stringify(value)}` });
    }
  }
}

const CRON_FIELDS = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day of month', min: 1, max: 31, any: true },
  { name: 'month', min: 1, max: 12,
    names: ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'] },
  { name: 'day of week', min: 0, max: 6, any: true,
    names: ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] },
];
const CRON_MACROS = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly'];

function cronValue(text, field) {
  if (/^[0-9]+$/.test(text)) return Number(text);
  const index = (field.names ?? []).indexOf(text.toLowerCase());
  return index < 0 ? NaN : index + field.min;
}

// Why a 5-field cron schedule is invalid (the CronJob controller's parser), or null.
export function cronError(schedule) {
  if (/(^|\s)(CRON_)?TZ=/.test(schedule)) return 'a time zone in the schedule is refused: use spec.timeZone';
  const text = schedule.trim();
  if (CRON_MACROS.includes(text) || /^@every\s+\S+$/.test(text)) return null;
  const fields = text.split(/\s+/);
  if (fields.length !== 5) return `needs 5 fields (minute hour day month weekday), has ${fields.length}`;
  for (let i = 0; i < 5; i++) {
    const field = CRON_FIELDS[i];
    for (const part of fields[i].split(',')) {
      const match = /^(\*|\?|[^-/]+(?:-[^-/]+)?)(?:\/([0-9]+))?$/.exec(part);
      const bad = () => `${field.name} ${JSON.stringify(fields[i])} is not valid`;
      if (!match || (match[1] === '?' && !field.any) || match[2] === '0') return bad();
      if (match[1] === '*' || match[1] === '?') continue;
      const [low, high = low] = match[1].split('-').map((v) => cronValue(v, field));
      if (!(low >= field.min && high <= field.max && low <= high)) return bad();
    }
  }
  return null;
}

function checkCronJob(object, out) {
  const schedule = object.spec?.schedule;
  if (typeof schedule === 'string') {
    const bad = cronError(schedule);
    if (bad) out.push({ segments: ['spec', 'schedule'], message: `schedule: ${bad}`, check: 'cron-schedule' });
  }
  checkTemplate(object.spec?.jobTemplate?.spec?.template,
    ['spec', 'jobTemplate', 'spec', 'template'], { restartPolicies: ['OnFailure', 'Never'] }, out);
}

function checkConfigKeys(object, out) {
  const seen = new Set();
  for (const field of ['data', 'binaryData', 'stringData']) {
    if (!isObject(object[field])) continue;
    for (const key of Object.keys(object[field])) {
      const bad = configKey(key);
      if (bad) out.push({ segments: [field, key], message: bad, check: 'config-key' });
      if (field !== 'stringData' && seen.has(key)) {
        out.push({ segments: [field, key], check: 'config-key',
          message: `key ${JSON.stringify(key)} is in both data and binaryData` });
      }
      seen.add(key);
    }
  }
}

// Exactly one of `fields` in the source at `segments` (a CEL rule of the snapshot CRDs).
function checkOneSource(object, segments, fields, out) {
  const source = segments.reduce((node, s) => node?.[s], object);
  if (!isObject(source)) return;
  const present = fields.filter((f) => source[f] !== undefined && source[f] !== null);
  if (present.length !== 1) {
    out.push({ segments, check: 'snapshot-source',
      message: `exactly one of ${fields.join(', ')} must be set, ` +
        (present.length === 0 ? 'none is' : `${present.join(' and ')} are`) });
  }
}

// The rules for one object with a string apiVersion and kind. They read the object
// defensively: a value of the wrong type is the schema check's to report.
export function checkRules(object) {
  const out = [];
  checkMetadata(object, out);
  const kind = object.kind;
  const group = object.apiVersion.includes('/') ? object.apiVersion.split('/')[0] : '';
  if (group === 'apps' && WORKLOADS.has(kind) && isObject(object.spec)) {
    checkWorkloadSelector(object.spec, out);
    if (kind === 'StatefulSet') {
      checkStatefulSet(object, out);
    } else {
      checkTemplate(object.spec.template, ['spec', 'template'], { restartPolicies: ['Always'] }, out);
    }
  } else if (group === 'batch' && kind === 'Job') {
    checkTemplate(object.spec?.template, ['spec', 'template'],
      { restartPolicies: ['OnFailure', 'Never'] }, out);
  } else if (group === 'batch' && kind === 'CronJob') {
    checkCronJob(object, out);
  } else if (group === '' && kind === 'Pod') {
    checkPodSpec(object.spec, ['spec'], {}, out);
  } else if (group === '' && kind === 'Service') {
    checkService(object, out);
  } else if (group === '' && kind === 'PersistentVolumeClaim') {
    checkClaimSpec(object.spec, ['spec'], out);
  } else if (group === '' && (kind === 'ConfigMap' || kind === 'Secret')) {
    checkConfigKeys(object, out);
  } else if (group === 'policy' && kind === 'PodDisruptionBudget') {
    checkDisruptionBudget(object, out);
  } else if (group === 'snapshot.storage.k8s.io' && kind === 'VolumeSnapshot') {
    checkOneSource(object, ['spec', 'source'], ['persistentVolumeClaimName', 'volumeSnapshotContentName'], out);
  } else if (group === 'snapshot.storage.k8s.io' && kind === 'VolumeSnapshotContent') {
    checkOneSource(object, ['spec', 'source'], ['snapshotHandle', 'volumeHandle'], out);
  } else if (group === 'groupsnapshot.storage.k8s.io' && kind === 'VolumeGroupSnapshot') {
    checkOneSource(object, ['spec', 'source'], ['selector', 'volumeGroupSnapshotContentName'], out);
  }
  return out;
}
