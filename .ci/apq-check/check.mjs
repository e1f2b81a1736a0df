#!/usr/bin/env node
// Automatic persisted queries with the real Apollo Client: `PersistedQueryLink` in front of
// an `HttpLink`, whose fetch records every request and response, so the checks see what
// went over the wire: the first run of a document misses and registers it, later runs
// send its hash alone and hit, over POST and with `useGETForHashedQueries` over GET.
//
//   APQ_AUTHORIZATION="Bearer <jwt>" node check.mjs http://127.0.0.1:PORT/graphql
//
// The documents carry a random operation name, so a Redis shared with earlier runs cannot
// already hold them. Prints "ok   <check>" / "fail <check>: <why>"; exit 1 if any failed.
import { createHash, randomBytes } from 'node:crypto';
import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';

const url = process.argv[2] ?? process.env.APQ_URL;
if (!url) {
  console.error('usage: node check.mjs http://HOST:PORT/graphql');
  process.exit(2);
}
const authorization = process.env.APQ_AUTHORIZATION;
const sha256 = (text) => createHash('sha256').update(text).digest('hex');
const run = randomBytes(6).toString('hex');

let failures = 0;
async function check(name, fn) {
  try {
    const detail = await fn();
    console.log(`ok   ${name}${detail ? ` (${detail})` : ''}`);
  } catch (err) {
    failures += 1;
    console.log(`fail ${name}: ${err?.message ?? err}`);
  }
}

function expect(condition, what, exchange) {
  if (!condition) throw new Error(`${what}: ${JSON.stringify(exchange ?? null)}`);
}

/** What one request sent and got back, as the client's fetch saw it. */
const exchanges = [];
async function recordingFetch(input, init = {}) {
  const requestUrl = new URL(typeof input === 'string' ? input : input.url);
  const method = (init.method ?? 'GET').toUpperCase();
  let sent;
  if (method === 'GET') {
    sent = {};
    for (const [key, value] of requestUrl.searchParams) {
      sent[key] = key === 'variables' || key === 'extensions' ? JSON.parse(value) : value;
    }
  } else {
    sent = JSON.parse(init.body);
  }
  const response = await fetch(input, init);
  const received = JSON.parse(await response.clone().text());
  exchanges.push({ method, sent, status: response.status, received });
  return response;
}

function client(options = {}) {
  const http = new HttpLink({
    uri: url,
    fetch: recordingFetch,
    headers: authorization ? { authorization } : {},
  });
  return new ApolloClient({
    link: new PersistedQueryLink({ sha256, ...options }).concat(http),
    cache: new InMemoryCache(),
  });
}

function hashOnly(exchange) {
  const hash = exchange.sent.extensions?.persistedQuery?.sha256Hash;
  expect(typeof hash === 'string' && exchange.sent.query === undefined, 'expected the hash alone', exchange);
  return hash;
}

function expectMiss(exchange, method) {
  hashOnly(exchange);
  expect(exchange.method === method, `expected a ${method}`, exchange);
  expect(exchange.status === 200, 'a miss answers HTTP 200', exchange);
  const codes = (exchange.received.errors ?? []).map((e) => e.extensions?.code);
  expect(codes.includes('PERSISTED_QUERY_NOT_FOUND'), 'expected PERSISTED_QUERY_NOT_FOUND', exchange);
}

function expectRegistration(exchange) {
  const { query, extensions } = exchange.sent;
  expect(exchange.method === 'POST', 'Apollo registers over POST', exchange);
  expect(typeof query === 'string', 'expected the text with the hash', exchange);
  expect(extensions?.persistedQuery?.sha256Hash === sha256(query), 'the hash is the text\'s SHA-256', exchange);
  expect(exchange.received.data && !exchange.received.errors, 'the registering run answers data', exchange);
}

function expectHit(exchange, method) {
  hashOnly(exchange);
  expect(exchange.method === method, `expected a ${method}`, exchange);
  expect(exchange.received.data && !exchange.received.errors, 'a hit answers data', exchange);
}

async function steps(fn) {
  exchanges.length = 0;
  await fn();
  return exchanges.splice(0);
}

const QUERY = gql`
  query ApqCheck_${run}($first: Int) {
    headPosition
    orders(first: $first) { edges { cursor } }
  }
`;
const GET_QUERY = gql`
  query ApqCheckGet_${run}($first: Int) {
    headPosition
    orders(first: $first) { edges { cursor } }
  }
`;
const CREATE = gql`
  mutation ApqCheckCreate_${run}($customer: ID!) {
    createOrder(input: { customerId: $customer }) { position }
  }
`;

await check('first query misses, then registers its text (POST)', async () => {
  const sent = await steps(() => client().query({ query: QUERY, variables: { first: 1 }, fetchPolicy: 'network-only' }));
  expect(sent.length === 2, 'expected two requests', sent);
  expectMiss(sent[0], 'POST');
  expectRegistration(sent[1]);
  return `hash ${hashOnly(sent[0]).slice(0, 12)}…`;
});

await check('second query hits by hash alone (POST), from a fresh client', async () => {
  const sent = await steps(async () => {
    const { data } = await client().query({ query: QUERY, variables: { first: 1 }, fetchPolicy: 'network-only' });
    expect(typeof data.headPosition === 'string', 'expected headPosition', data);
  });
  expect(sent.length === 1, 'expected one request', sent);
  expectHit(sent[0], 'POST');
});

await check('useGETForHashedQueries: misses over GET, registers over POST, then hits over GET', async () => {
  const get = client({ useGETForHashedQueries: true });
  const first = await steps(() => get.query({ query: GET_QUERY, variables: { first: 2 }, fetchPolicy: 'network-only' }));
  expect(first.length === 2, 'expected two requests', first);
  expectMiss(first[0], 'GET');
  expect(first[0].sent.variables?.first === 2, 'variables go in the query string', first[0]);
  expectRegistration(first[1]);
  const second = await steps(() => get.query({ query: GET_QUERY, variables: { first: 2 }, fetchPolicy: 'network-only' }));
  expect(second.length === 1, 'expected one request', second);
  expectHit(second[0], 'GET');
});

await check('mutations: registered once, then sent by hash (POST, even with useGETForHashedQueries)', async () => {
  const get = client({ useGETForHashedQueries: true });
  const mutate = () => get.mutate({ mutation: CREATE, variables: { customer: `cus_apq_${run}` } });
  const first = await steps(mutate);
  expect(first.length === 2, 'expected two requests', first);
  expectMiss(first[0], 'POST');
  expectRegistration(first[1]);
  const second = await steps(mutate);
  expect(second.length === 1, 'expected one request', second);
  expectHit(second[0], 'POST');
  return `positions ${first[1].received.data.createOrder.position}, ${second[0].received.data.createOrder.position}`;
});

if (failures) {
  console.log(`${failures} check(s) failed`);
  process.exit(1);
}
console.log('all APQ checks passed');
