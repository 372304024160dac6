// API-server rules of a pod spec (inside a StatefulSet, Job, CronJob, ... template) that
// the schema cannot express, and the run-time warnings about its probes.
import { dns1123Label, ianaServiceName } from './names.mjs';

export const list = (value) => (Array.isArray(value) ? value : []);
export const isObject = (value) =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

// Adds a problem for each repeated `name` among `entries` ({value, segments}).
export function uniqueNames(entries, what, out) {
  const seen = new Map();
  for (const { value, segments } of entries) {
    if (typeof value !== 'string') continue;
    if (seen.has(value)) {
      out.push({ segments, message: `${what} name ${JSON.stringify(value)} is used twice`,
        check: 'unique-name' });
    } else {
      seen.set(value, segments);
    }
  }
}

const PROBE_HANDLERS = ['exec', 'httpGet', 'tcpSocket', 'grpc'];
const HOOK_HANDLERS = ['exec', 'httpGet', 'tcpSocket', 'sleep'];

// A probe or lifecycle hook needs exactly one handler; a named port must be a valid port
// name and (a warning) one the container declares, or the kubelet fails the probe.
function checkHandler(handler, handlers, segments, what, portNames, out) {
  const present = handlers.filter((h) => handler[h] !== undefined && handler[h] !== null);
  if (present.length !== 1) {
    out.push({ segments,
      message: `${what} must have exactly one handler (${handlers.join(', ')}), has ` +
        (present.length === 0 ? 'none' : present.join(' and ')),
      check: 'probe' });
  }
  for (const type of ['httpGet', 'tcpSocket']) {
    const port = isObject(handler[type]) ? handler[type].port : undefined;
    const at = [...segments, type, 'port'];
    if (typeof port === 'string') {
      const bad = ianaServiceName(port);
      if (bad) {
        out.push({ segments: at, message: bad, check: 'name' });
      } else if (!portNames.has(port)) {
        out.push({ segments: at, severity: 'warning', check: 'probe-port',
          message: `${what} uses port ${JSON.stringify(port)}, which the container does not ` +
            'declare in ports' });
      }
    } else if (Number.isInteger(port) && (port < 1 || port > 65535)) {
      out.push({ segments: at, message: `port ${port} is not in 1-65535`, check: 'probe' });
    }
  }
}

function checkContainer(container, segments, volumes, claims, out) {
  const ports = list(container.ports);
  const portNames = new Set();
  ports.forEach((port, i) => {
    if (!isObject(port) || typeof port.name !== 'string') return;  // else a schema error
    const bad = ianaServiceName(port.name);
    if (bad) out.push({ segments: [...segments, 'ports', String(i), 'name'], message: bad, check: 'name' });
    portNames.add(port.name);
  });
  uniqueNames(ports.map((port, i) => ({ value: port?.name,
    segments: [...segments, 'ports', String(i), 'name'] })), 'port', out);

  const mountPaths = new Set();
  list(container.volumeMounts).forEach((mount, i) => {
    if (!isObject(mount)) return;
    const at = [...segments, 'volumeMounts', String(i)];
    if (typeof mount.name === 'string' && !volumes.has(mount.name) && !claims?.has(mount.name)) {
      out.push({ segments: [...at, 'name'], check: 'volume-mount',
        message: `volumeMount ${JSON.stringify(mount.name)} names no volume` +
          (claims ? ' or volumeClaimTemplate' : '') });
    }
    if (typeof mount.mountPath === 'string') {
      if (mountPaths.has(mount.mountPath)) {
        out.push({ segments: [...at, 'mountPath'], check: 'volume-mount',
          message: `mountPath ${JSON.stringify(mount.mountPath)} is mounted twice` });
      }
      mountPaths.add(mount.mountPath);
    }
  });

  for (const probe of ['livenessProbe', 'readinessProbe', 'startupProbe']) {
    if (!isObject(container[probe])) continue;
    const at = [...segments, probe];
    checkHandler(container[probe], PROBE_HANDLERS, at, probe, portNames, out);
    const threshold = container[probe].successThreshold;
    if (probe !== 'readinessProbe' && threshold !== undefined && threshold !== 1) {
      out.push({ segments: [...at, 'successThreshold'], check: 'probe',
        message: `${probe} successThreshold must be 1, is ${JSON.stringify(threshold)}` });
    }
  }
  const lifecycle = isObject(container.lifecycle) ? container.lifecycle : {};
  for (const hook of ['postStart', 'preStop']) {
    if (!isObject(lifecycle[hook])) continue;
    checkHandler(lifecycle[hook], HOOK_HANDLERS, [...segments, 'lifecycle', hook], hook,
      portNames, out);
  }
}

// Checks the pod spec at `segments`. `claims` holds a StatefulSet's volumeClaimTemplate
// names (mountable like volumes), null elsewhere; `restartPolicies` the policies the
// owner allows. Returns the names the containers mount.
export function checkPodSpec(spec, segments, { claims = null, restartPolicies }, out) {
  if (!isObject(spec)) return new Set();
  const containers = [
    ...list(spec.initContainers).map((c, i) => ({ c, at: [...segments, 'initContainers', String(i)] })),
    ...list(spec.containers).map((c, i) => ({ c, at: [...segments, 'containers', String(i)] })),
  ].filter(({ c }) => isObject(c));
  for (const { c, at } of containers) {
    const bad = typeof c.name === 'string' ? dns1123Label(c.name) : null;
    if (bad) out.push({ segments: [...at, 'name'], message: `container name ${bad}`, check: 'name' });
  }
  uniqueNames(containers.map(({ c, at }) => ({ value: c.name, segments: [...at, 'name'] })),
    'container', out);

  const volumes = list(spec.volumes);
  volumes.forEach((volume, i) => {
    const bad = typeof volume?.name === 'string' ? dns1123Label(volume.name) : null;
    if (bad) {
      out.push({ segments: [...segments, 'volumes', String(i), 'name'],
        message: `volume name ${bad}`, check: 'name' });
    }
  });
  uniqueNames(volumes.map((v, i) => ({ value: v?.name,
    segments: [...segments, 'volumes', String(i), 'name'] })), 'volume', out);
  const volumeNames = new Set(volumes.map((v) => v?.name).filter((n) => typeof n === 'string'));

  const mounted = new Set();
  for (const { c, at } of containers) {
    checkContainer(c, at, volumeNames, claims, out);
    for (const mount of list(c.volumeMounts)) if (isObject(mount)) mounted.add(mount.name);
  }

  const policy = spec.restartPolicy;
  if (restartPolicies && !restartPolicies.includes(policy ?? 'Always')) {
    out.push({
      segments: policy === undefined ? segments : [...segments, 'restartPolicy'],
      check: 'restart-policy',
      message: policy === undefined
        ? `restartPolicy defaults to Always; must be ${restartPolicies.join(' or ')} here`
        : `restartPolicy ${JSON.stringify(policy)} must be ${restartPolicies.join(' or ')} here`,
    });
  }
  return mounted;
}
