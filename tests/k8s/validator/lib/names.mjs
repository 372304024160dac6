// The name and value formats the API server enforces (k8s.io/apimachinery's validation
// package), each returning an error message or null when the value is valid.

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1035_LABEL = /^[a-z]([-a-z0-9]*[a-z0-9])?$/;
const QUALIFIED_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const IANA_SVC_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;
const CONFIG_KEY = /^[-._a-zA-Z0-9]+$/;

const quote = (value) => JSON.stringify(value);

export function dns1123Label(value) {
  if (typeof value !== 'string') return `${quote(value)} is not a string`;
  if (value.length > 63) return `${quote(value)} is longer than 63 characters`;
  if (!DNS1123_LABEL.test(value)) {
    return `${quote(value)} is not a DNS-1123 label (lower-case letters, digits and '-', ` +
      'starting and ending with a letter or digit)';
  }
  return null;
}

export function dns1123Subdomain(value) {
  if (typeof value !== 'string') return `${quote(value)} is not a string`;
  if (value.length > 253) return `${quote(value)} is longer than 253 characters`;
  if (!DNS1123_SUBDOMAIN.test(value)) {
    return `${quote(value)} is not a DNS-1123 subdomain (lower-case letters, digits, '-' and ` +
      "'.', each part starting and ending with a letter or digit)";
  }
  return null;
}

export function dns1035Label(value) {
  if (typeof value !== 'string') return `${quote(value)} is not a string`;
  if (value.length > 63) return `${quote(value)} is longer than 63 characters`;
  if (!DNS1035_LABEL.test(value)) {
    return `${quote(value)} is not a DNS-1035 label (lower-case letters, digits and '-', ` +
      'starting with a letter and ending with a letter or digit)';
  }
  return null;
}

// A port name (IANA_SVC_NAME): what probes, Services and NetworkPolicies refer to.
export function ianaServiceName(value) {
  if (typeof value !== 'string') return `${quote(value)} is not a string`;
  if (value.length > 15) return `port name ${quote(value)} is longer than 15 characters`;
  if (!IANA_SVC_NAME.test(value)) {
    return `port name ${quote(value)} may hold only lower-case letters, digits and '-', ` +
      "starting and ending with a letter or digit";
  }
  if (value.includes('--')) return `port name ${quote(value)} has two '-' in a row`;
  if (!/[a-z]/.test(value)) return `port name ${quote(value)} has no letter`;
  return null;
}

// A label or annotation key: an optional DNS-1123 subdomain prefix, '/', and a name.
export function qualifiedName(value) {
  if (typeof value !== 'string') return `key ${quote(value)} is not a string`;
  const slash = value.lastIndexOf('/');
  const name = slash < 0 ? value : value.slice(slash + 1);
  if (slash >= 0) {
    const prefix = value.slice(0, slash);
    if (prefix === '' || dns1123Subdomain(prefix)) {
      return `key ${quote(value)} has a prefix that is not a DNS-1123 subdomain`;
    }
  }
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME.test(name)) {
    return `key ${quote(value)} needs a name of 1 to 63 letters, digits, '-', '_' or '.', ` +
      'starting and ending with a letter or digit';
  }
  return null;
}

export function labelValue(value) {
  if (typeof value !== 'string') return `label value ${quote(value)} is not a string`;
  if (value.length > 63 || !LABEL_VALUE.test(value)) {
    return `label value ${quote(value)} must be empty or at most 63 letters, digits, '-', '_' ` +
      "or '.', starting and ending with a letter or digit";
  }
  return null;
}

export function configKey(value) {
  if (value.length > 253 || !CONFIG_KEY.test(value)) {
    return `key ${quote(value)} may hold only letters, digits, '-', '_' and '.' (at most 253)`;
  }
  return null;
}

// JSON Pointer (RFC 6901) of a path given as segments.
export function pointer(segments) {
  if (segments.length === 0) return '/';
  return segments.map((s) => '/' + String(s).replace(/~/g, '~0').replace(/\//g, '~1')).join('');
}
