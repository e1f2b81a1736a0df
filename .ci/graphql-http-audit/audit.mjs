#!/usr/bin/env node
// Run the graphql-http conformance audit (GraphQL over HTTP spec) against a server.
//
//   node audit.mjs http://127.0.0.1:PORT/graphql
//   AUDIT_AUTHORIZATION="Bearer <jwt>" node audit.mjs http://127.0.0.1:PORT/graphql
//
// Prints one line per audit (ok / notice / warn / error, id, name; the reason
// indented below a failure), then "N ok, N warn, N error". Exit code: 0 when
// no audit is an error, 1 when one is, 2 on usage error or unreachable server.
import { auditServer } from 'graphql-http';

const url = process.argv[2] ?? process.env.AUDIT_URL;
if (!url) {
  console.error('usage: node audit.mjs http://HOST:PORT/graphql  (env AUDIT_AUTHORIZATION optional)');
  process.exit(2);
}
const authorization = process.env.AUDIT_AUTHORIZATION;

/** global fetch, plus the Authorization header when AUDIT_AUTHORIZATION is set. */
function fetchFn(input, init = {}) {
  if (!authorization) return fetch(input, init);
  const headers = new Headers(input instanceof Request ? input.headers : undefined);
  new Headers(init.headers).forEach((value, key) => headers.set(key, value));
  if (!headers.has('authorization')) headers.set('authorization', authorization);
  return fetch(input, { ...init, headers });
}

try {
  await fetchFn(url, { method: 'GET', headers: { accept: 'application/json' } });
} catch (err) {
  console.error(`cannot reach ${url}: ${err.cause?.message ?? err.message}`);
  process.exit(2);
}

const results = await auditServer({ url, fetchFn });
const counts = { ok: 0, notice: 0, warn: 0, error: 0 };
for (const result of results) {
  counts[result.status] += 1;
  console.log(`${result.status.padEnd(6)} ${result.id} ${result.name}`);
  if (result.status !== 'ok' && result.reason) {
    console.log(`       ${result.reason.replace(/\n/g, '\n       ')}`);
  }
}
const notice = counts.notice ? `, ${counts.notice} notice` : '';
console.log(`${counts.ok} ok, ${counts.warn} warn, ${counts.error} error${notice} (of ${results.length})`);
process.exit(counts.error > 0 ? 1 : 0);
