// The `schema` and `unknown-field` checks. Built-in kinds are validated by the
// validators kubernetes-models compiled from the Kubernetes OpenAPI spec, the snapshot
// CRDs by ajv against crds.mjs.
//
// Those schemas do not forbid additional properties, so unknown fields are found by
// watching the validator: it reads every property its schema declares (present or not)
// and no other, so a key of the manifest that the validator never read is one the
// schema does not have. An object of which the validator read nothing at all has no
// schema of its own (free-form, e.g. a RawExtension) and is not checked.
import Ajv from 'ajv';
import { formats } from '@kubernetes-models/validate';
import { crds } from './crds.mjs';

export const KUBERNETES_VERSION = '1.33';  // the OpenAPI spec of kubernetes-models 4.5.1

// kubernetes-models' quantity format accepts every metric prefix (h, da, c, ...); the
// API server's parser (resource.ParseQuantity) only these suffixes and integer exponents.
// The compiled validators look the pattern up on each call, so setting it here applies.
formats.quantity.validate =
  /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$/;

const API_VERSION = /^(?:[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?\/)?v[0-9]+(?:(?:alpha|beta)[0-9]+)?$/;

const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const validators = new Map();  // "apiVersion|kind" -> validate(proxy) -> ajv errors, or null

// The validator of a kind, or null when there is no schema for it.
export async function validatorFor(apiVersion, kind) {
  const key = `${apiVersion}|${kind}`;
  if (!validators.has(key)) validators.set(key, await load(apiVersion, kind));
  return validators.get(key);
}

async function load(apiVersion, kind) {
  const crd = crds[`${apiVersion}|${kind}`];
  if (crd) {
    const validate = ajv.compile(crd.schema);
    return (data) => {
      const errors = validate(data) ? [] : [...validate.errors];
      for (const { path, model } of crd.models) {
        const value = path.reduce((node, segment) => node?.[segment], data);
        if (value !== undefined) errors.push(...runModel(model, value, pointerOf(path)));
      }
      return errors;
    };
  }
  if (!API_VERSION.test(apiVersion)) return null;
  let module;
  try {
    module = await import(`kubernetes-models/${apiVersion}`);
  } catch {
    return null;  // no such group/version in this Kubernetes release
  }
  const model = module[kind];
  if (typeof model !== 'function' || model.apiVersion !== apiVersion || model.kind !== kind) {
    return null;
  }
  return (data) => runModel(model, data, '');
}

// Runs a kubernetes-models model's compiled validator on `data` itself (the model's
// constructor would copy it, and the copy would hide what the validator reads).
function runModel(model, data, prefix) {
  try {
    model.prototype.validate.call(data);
    return [];
  } catch (error) {
    if (!Array.isArray(error.errors)) throw error;
    return error.errors.map((e) => ({ ...e, instancePath: prefix + e.instancePath }));
  }
}

function pointerOf(segments) {
  return segments.map((s) => '/' + s.replace(/~/g, '~0').replace(/\//g, '~1')).join('');
}

// Proxies over a decoded document that record, per object, the keys read through them.
function watch(root) {
  const reads = new WeakMap();
  const proxies = new WeakMap();
  const wrap = (value) => {
    if (value === null || typeof value !== 'object') return value;
    const plain = Array.isArray(value) || Object.getPrototypeOf(value) === Object.prototype;
    if (!plain) return value;
    let proxy = proxies.get(value);
    if (proxy) return proxy;
    const keys = new Set();
    reads.set(value, keys);
    proxy = new Proxy(value, {
      get(target, key, receiver) {
        if (typeof key === 'string') keys.add(key);
        return wrap(Reflect.get(target, key, receiver));
      },
      has(target, key) {
        if (typeof key === 'string') keys.add(key);
        return Reflect.has(target, key);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };
  return { proxy: wrap(root), reads };
}

function unknownFields(value, reads, segments, out) {
  if (value === null || typeof value !== 'object') return;
  if (Array.isArray(value)) {
    value.forEach((item, i) => unknownFields(item, reads, [...segments, String(i)], out));
    return;
  }
  const read = reads.get(value);
  if (!read || read.size === 0) return;  // free-form, or a type error reported already
  for (const key of Object.keys(value)) {
    if (read.has(key)) {
      unknownFields(value[key], reads, [...segments, key], out);
    } else {
      out.push({ segments: [...segments, key], message: `unknown field ${JSON.stringify(key)}` });
    }
  }
}

// Validates one decoded object with `validate`. Returns {segments, message, check, key}
// problems: `key` when the position to report is the field's key.
export function checkSchema(object, validate) {
  const { proxy, reads } = watch(object);
  const errors = validate(proxy);
  const problems = describe(errors, object).map((p) => ({ ...p, check: 'schema' }));
  const unknown = [];
  unknownFields(object, reads, [], unknown);
  for (const u of unknown) problems.push({ ...u, check: 'unknown-field', key: true });
  return problems;
}

function segmentsOf(instancePath) {
  if (instancePath === '') return [];
  return instancePath.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function valueAt(object, segments) {
  return segments.reduce((node, segment) => node?.[segment], object);
}

function typeName(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

// Turns ajv errors into one message per failing value. A oneOf (int-or-string,
// quantity) reports what its branches allow instead of each branch's failure.
function describe(errors, object) {
  const byPath = new Map();
  for (const error of errors) {
    if (!byPath.has(error.instancePath)) byPath.set(error.instancePath, []);
    byPath.get(error.instancePath).push(error);
  }
  const oneOfPaths = [...byPath.keys()].filter(
    (path) => byPath.get(path).some((e) => e.keyword === 'oneOf'));
  const problems = [];
  for (const [path, list] of byPath) {
    if (oneOfPaths.some((p) => path !== p && path.startsWith(p + '/'))) continue;
    const segments = segmentsOf(path);
    const value = valueAt(object, segments);
    const got = `got ${typeName(value)}`;
    const add = (message) => problems.push({ segments, message });
    if (oneOfPaths.includes(path)) {
      const format = list.find((e) => e.keyword === 'format');
      if (format) {
        add(`${JSON.stringify(value)} does not match format "${format.params.format}"`);
      } else {
        const types = [...new Set(list.filter((e) => e.keyword === 'type').map((e) => e.params.type))];
        add(`must be of type ${types.join(' or ')}, ${got}`);
      }
      continue;
    }
    const typeError = list.find((e) => e.keyword === 'type');
    if (typeError) {
      add(`must be of type ${[].concat(typeError.params.type).join(' or ')}, ${got}`);
      continue;
    }
    for (const error of list) {
      switch (error.keyword) {
        case 'required':
          add(`missing required field ${JSON.stringify(error.params.missingProperty)}`);
          break;
        case 'enum':
          add(`${JSON.stringify(value)} is not one of ` +
            error.params.allowedValues.map((v) => JSON.stringify(v)).join(', '));
          break;
        case 'format':
          add(`${JSON.stringify(value)} does not match format "${error.params.format}"`);
          break;
        default:
          add(error.message ?? `fails ${error.keyword}`);
      }
    }
  }
  return problems;
}
