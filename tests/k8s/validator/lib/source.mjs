// Reading a multi-document YAML stream as the API server decodes it, and mapping a path
// inside an object back to a line and column of the text.
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseAllDocuments } from 'yaml';

// The API server decodes YAML with go-yaml v2 (through sigs.k8s.io/yaml): YAML 1.1
// booleans (`yes`, `on`), octal (`0644`) and hex ints, but timestamps and base-60
// numbers stay strings. The yaml package's 1.1 schema makes the latter Dates and
// numbers, so those three tags are dropped.
function goYamlTags(tags) {
  return tags.filter((tag) => tag.format !== 'TIME' && tag.tag !== 'tag:yaml.org,2002:timestamp');
}

// One document of a stream: its decoded object and what locates a path in its text.
export class Document {
  constructor(source, index, doc, lineCounter) {
    this.source = source;
    this.index = index;
    this.doc = doc;
    this.lineCounter = lineCounter;
    this.object = doc.toJS({ maxAliasCount: 1000 });
  }

  get kind() { return typeof this.object?.kind === 'string' ? this.object.kind : undefined; }
  get apiVersion() {
    return typeof this.object?.apiVersion === 'string' ? this.object.apiVersion : undefined;
  }
  get name() {
    const name = this.object?.metadata?.name;
    return typeof name === 'string' ? name : undefined;
  }
  get namespace() {
    const namespace = this.object?.metadata?.namespace;
    return typeof namespace === 'string' ? namespace : '';
  }
  // "Kind/name" as reports name an object.
  get label() {
    if (this.object === null || typeof this.object !== 'object' || Array.isArray(this.object)) {
      return `document ${this.index + 1}`;
    }
    return `${this.kind ?? '?'}/${this.name ?? '?'}`;
  }

  // Line and column (1-based) of the node at `segments`: its key when `key` and it is a
  // mapping entry, else its value; the deepest existing ancestor when it is absent.
  position(segments, { key = false } = {}) {
    let node = this.doc.contents;
    let keyNode = null;
    for (const segment of segments) {
      node = this.#resolve(node);
      let next;
      if (isMap(node)) {
        const pair = node.items.find((item) => keyText(item.key) === String(segment));
        if (pair) {
          keyNode = pair.key;
          next = pair.value ?? pair.key;
        }
      } else if (isSeq(node)) {
        next = node.items[Number(segment)];
        keyNode = null;
      }
      if (!next) {
        keyNode = null;
        break;
      }
      node = next;
    }
    const at = (key && keyNode) ? keyNode : node;
    return this.lineCounter.linePos(at?.range?.[0] ?? 0);
  }

  #resolve(node) {
    return isAlias(node) ? node.resolve(this.doc) : node;
  }
}

function keyText(node) {
  if (isScalar(node)) return String(node.value);
  return undefined;
}

// Parses `text` (named `source` in reports) into documents. Returns the non-empty
// documents and the YAML errors as problems.
export function parseStream(text, source) {
  const lineCounter = new LineCounter();
  const parsed = parseAllDocuments(text, {
    version: '1.1', customTags: goYamlTags, lineCounter, uniqueKeys: true, merge: true,
    prettyErrors: false,
  });
  const documents = [];
  const problems = [];
  const list = Array.isArray(parsed) ? parsed : [];
  list.forEach((doc, index) => {
    if (doc.errors.length > 0) {
      for (const error of doc.errors) {
        const { line, col } = lineCounter.linePos(error.pos?.[0] ?? 0);
        problems.push({
          source, line, col, severity: 'error', object: `document ${index + 1}`, path: '/',
          message: firstLine(error.message), check: 'yaml',
        });
      }
      return;
    }
    if (doc.contents === null) return;  // an empty document, e.g. after a trailing ---
    documents.push(new Document(source, index, doc, lineCounter));
  });
  return { documents, problems };
}

function firstLine(message) {
  return String(message).split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
}
