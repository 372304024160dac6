#!/usr/bin/env node
// Validates rendered Kubernetes manifests offline; README.md says what it checks.
//
//   kubectl kustomize k8s/overlays/prod | node validate.mjs --strict
//   node validate.mjs [--strict] [--skip-kind apiVersion/Kind]... [FILE|-]...
//
// Exit 0 valid, 1 problems (errors, or warnings with --strict), 2 usage or input error.
import { readFileSync } from 'node:fs';
import { formatProblem, validateSources } from './lib/validator.mjs';

const USAGE = `usage: validate.mjs [--strict] [--skip-kind apiVersion/Kind]... [FILE|-]...
  Validates the YAML documents of the files (or of stdin when none, or '-') as one set.
  --strict               warnings fail the run too
  --skip-kind KIND       accept KIND ("apiVersion/Kind" or "Kind") without a schema`;

class UsageError extends Error {}

function parseArgs(argv) {
  const options = { strict: false, skipKinds: [], files: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--strict') {
      options.strict = true;
    } else if (arg === '--skip-kind' || arg.startsWith('--skip-kind=')) {
      const value = arg === '--skip-kind' ? argv[++i] : arg.slice('--skip-kind='.length);
      if (!value) throw new UsageError('--skip-kind needs a kind');
      options.skipKinds.push(value);
    } else if (arg === '-h' || arg === '--help') {
      options.help = true;
    } else if (arg.startsWith('-') && arg !== '-') {
      throw new UsageError(`unknown option ${arg}`);
    } else {
      options.files.push(arg);
    }
  }
  if (options.files.length === 0) options.files.push('-');
  return options;
}

function readSources(files) {
  return files.map((file) => {
    try {
      return file === '-'
        ? { name: 'stdin', text: readFileSync(0, 'utf8') }
        : { name: file, text: readFileSync(file, 'utf8') };
    } catch (error) {
      throw new UsageError(`cannot read ${file === '-' ? 'stdin' : file}: ${error.message}`);
    }
  });
}

async function main(argv) {
  let options;
  let sources;
  try {
    options = parseArgs(argv);
    if (options.help) {
      console.log(USAGE);
      return 0;
    }
    sources = readSources(options.files);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`validate.mjs: ${error.message}\n${USAGE}`);
    return 2;
  }
  const { problems, objects } = await validateSources(sources, { skipKinds: options.skipKinds });
  for (const problem of problems) console.log(formatProblem(problem));
  const errors = problems.filter((p) => p.severity === 'error').length;
  const warnings = problems.length - errors;
  const failed = errors > 0 || (options.strict && warnings > 0);
  console.log(`${failed ? 'FAIL' : 'OK'}: ${objects} object(s) checked, ${errors} error(s), ` +
    `${warnings} warning(s)`);
  return failed ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (error) => {
  console.error(`validate.mjs: ${error.stack ?? error}`);
  process.exitCode = 2;
});
