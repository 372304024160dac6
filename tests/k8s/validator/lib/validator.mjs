// Validates a set of YAML sources as one set of objects: each object against its schema
// and the API-server rules, then the objects against each other (duplicates, a
// StatefulSet's governing Service).
import { pointer } from './names.mjs';
import { isObject } from './pod.mjs';
import { checkRules } from './rules.mjs';
import { KUBERNETES_VERSION, checkSchema, validatorFor } from './schema.mjs';
import { parseStream } from './source.mjs';

// `skipKinds` entries are "apiVersion/Kind" or "Kind": objects of those kinds are
// accepted without a schema (their names and duplicates are still checked).
function skipped(skipKinds, apiVersion, kind) {
  return skipKinds.some((entry) => {
    const slash = entry.lastIndexOf('/');
    if (slash < 0) return entry === kind;
    return entry.slice(0, slash) === apiVersion && entry.slice(slash + 1) === kind;
  });
}

// A problem as reported: where (source, line, col), what object, which path.
function report(document, problem) {
  const { line, col } = document.position(problem.segments, { key: problem.key });
  return {
    source: document.source, line, col, severity: problem.severity ?? 'error',
    object: document.label, path: pointer(problem.segments), message: problem.message,
    check: problem.check,
  };
}

async function checkDocument(document, skipKinds) {
  const object = document.object;
  if (!isObject(object)) {
    return [{ segments: [], message: 'a document must be a mapping (an object)', check: 'yaml' }];
  }
  const problems = [];
  for (const field of ['apiVersion', 'kind']) {
    if (typeof object[field] !== 'string' || object[field] === '') {
      problems.push({ segments: object[field] === undefined ? [] : [field], check: 'kind',
        message: `missing or invalid ${field}` });
    }
  }
  if (problems.length > 0) return problems;
  const { apiVersion, kind } = object;
  if (!skipped(skipKinds, apiVersion, kind)) {
    const validate = await validatorFor(apiVersion, kind);
    if (!validate) {
      return [{ segments: ['kind'], check: 'kind',
        message: `no schema for ${apiVersion} ${kind} (Kubernetes ${KUBERNETES_VERSION} and ` +
          'the snapshot CRDs); a custom kind needs --skip-kind' }];
    }
    problems.push(...checkSchema(object, validate));
  }
  problems.push(...checkRules(object));
  return problems;
}

// The object's identity for duplicates: API group (not version), kind, namespace, name.
function identity(document) {
  const group = document.apiVersion.includes('/') ? document.apiVersion.split('/')[0] : '';
  return `${group}|${document.kind}|${document.namespace}|${document.name}`;
}

function crossChecks(documents) {
  const out = [];
  const identified = documents.filter((d) => isObject(d.object) && d.apiVersion && d.kind && d.name);
  const first = new Map();
  for (const document of identified) {
    const key = identity(document);
    const earlier = first.get(key);
    if (earlier) {
      const { line } = earlier.position([]);
      out.push([document, { segments: ['metadata', 'name'], check: 'duplicate-object',
        message: `${document.label} is defined twice (first at ${earlier.source}:${line})` }]);
    } else {
      first.set(key, document);
    }
  }
  const services = identified.filter((d) => d.apiVersion === 'v1' && d.kind === 'Service');
  for (const document of identified) {
    if (document.apiVersion !== 'apps/v1' || document.kind !== 'StatefulSet') continue;
    const serviceName = document.object.spec?.serviceName;
    const warn = (segments, message) => out.push([document, { segments, message,
      severity: 'warning', check: 'service-name' }]);
    if (typeof serviceName !== 'string' || serviceName === '') {
      warn(['spec'], 'no serviceName: the pods get no stable DNS names');
      continue;
    }
    const service = services.find(
      (s) => s.name === serviceName && s.namespace === document.namespace);
    if (!service) {
      warn(['spec', 'serviceName'], `serviceName ${JSON.stringify(serviceName)} names no ` +
        'Service of these manifests in the same namespace');
    } else if (service.object.spec?.clusterIP !== 'None') {
      warn(['spec', 'serviceName'], `serviceName ${JSON.stringify(serviceName)} names a ` +
        'Service that is not headless (clusterIP None): the pods get no DNS records');
    }
  }
  return out;
}

// Validates `sources` ({name, text}). Returns {problems, objects}: problems in the
// order of the sources and of their lines, objects the number of objects checked.
export async function validateSources(sources, { skipKinds = [] } = {}) {
  const problems = [];
  const documents = [];
  for (const { name, text } of sources) {
    const parsed = parseStream(text, name);
    problems.push(...parsed.problems);
    documents.push(...parsed.documents);
  }
  for (const document of documents) {
    for (const problem of await checkDocument(document, skipKinds)) {
      problems.push(report(document, problem));
    }
  }
  for (const [document, problem] of crossChecks(documents)) problems.push(report(document, problem));
  const order = new Map(sources.map((s, i) => [s.name, i]));
  problems.sort((a, b) => (order.get(a.source) - order.get(b.source)) || (a.line - b.line) ||
    (a.col - b.col));
  return { problems, objects: documents.length };
}

export function formatProblem(p) {
  return `${p.source}:${p.line}:${p.col}: ${p.severity}: ${p.object}: ${p.path}: ${p.message} [${p.check}]`;
}
