#!/usr/bin/env node
// graphql-transport-ws conformance checks, with the graphql-ws client and raw `ws` sockets.
//
//   WS_AUTHORIZATION="Bearer <jwt>" node check.mjs ws://127.0.0.1:PORT/graphql
//
// env: WS_AUTHORIZATION  sent in connection_init as {"authorization": ...}
//      WS_SUBSCRIPTION   default: subscription { events { position type } }
//      WS_EXPECT         number of `next` messages to wait for (default 1)
//      WS_TRIGGER_CMD    shell command run once the subscription is sent, to cause events
//      WS_TRIGGER_DELAY_MS  wait before running it (default 500)
//      WS_TIMEOUT_MS     per-step timeout (default 10000)
// Prints "ok   <check>" / "fail <check>: <why>" per check; exit 1 if any failed, 2 on usage.
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const url = process.argv[2] ?? process.env.WS_URL;
if (!url) {
  console.error('usage: node check.mjs ws://HOST:PORT/graphql  (see the header for env vars)');
  process.exit(2);
}
const PROTOCOL = 'graphql-transport-ws';
const authorization = process.env.WS_AUTHORIZATION;
const query = process.env.WS_SUBSCRIPTION || 'subscription { events { position type } }';
const expected = Number(process.env.WS_EXPECT ?? 1);
const trigger = process.env.WS_TRIGGER_CMD;
const triggerDelayMs = Number(process.env.WS_TRIGGER_DELAY_MS ?? 500);
const timeoutMs = Number(process.env.WS_TIMEOUT_MS ?? 10000);
const goodInit = { type: 'connection_init', payload: authorization ? { authorization } : {} };

let failures = 0;
async function check(name, fn) {
  try {
    const detail = await fn();
    console.log(`ok   ${name}${detail ? ` (${detail})` : ''}`);
    return true;
  } catch (err) {
    failures += 1;
    console.log(`fail ${name}: ${err?.message ?? err}`);
    return false;
  }
}

function withTimeout(promise, what, ms = timeoutMs) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A graphql-ws sink error (GraphQL errors, a CloseEvent or an Error) as text. */
function describe(err) {
  if (Array.isArray(err)) return `error message: ${JSON.stringify(err)}`;
  if (err && typeof err.code === 'number') return `socket closed ${err.code} ${err.reason ?? ''}`.trim();
  return err?.message ?? String(err);
}

/** A raw protocol socket: send JSON, receive the next message, or wait for the close. */
class RawSocket {
  static open() {
    return withTimeout(
      new Promise((resolve, reject) => {
        const raw = new RawSocket(new WebSocket(url, PROTOCOL));
        raw.ws.once('open', () => resolve(raw));
        raw.ws.once('error', reject);
      }),
      'the socket to open',
    );
  }

  constructor(ws) {
    this.ws = ws;
    this.inbox = [];
    this.waiting = null;
    ws.on('message', (data) => {
      this.inbox.push(JSON.parse(data.toString()));
      this.waiting?.();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        resolve({ code, reason: reason.toString() });
        this.waiting?.();
      });
    });
    ws.on('error', () => {}); // reported through `closed`
  }

  send(message) {
    this.ws.send(JSON.stringify(message));
  }

  async receive(what) {
    const deadline = Date.now() + timeoutMs;
    while (this.inbox.length === 0) {
      if (this.ws.readyState === WebSocket.CLOSED) {
        const { code, reason } = await this.closed;
        throw new Error(`socket closed ${code} ${reason} while waiting for ${what}`);
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => {
        this.waiting = resolve;
        setTimeout(resolve, 100);
      });
    }
    return this.inbox.shift();
  }

  async expectType(type) {
    const message = await this.receive(type);
    if (message.type !== type) throw new Error(`expected ${type}, got ${JSON.stringify(message)}`);
    return message;
  }

  async expectClose(code) {
    const closed = await withTimeout(this.closed, `close ${code}`);
    const got = this.inbox.length ? `; received ${JSON.stringify(this.inbox)}` : '';
    if (closed.code !== code) throw new Error(`closed with ${closed.code} ${closed.reason}${got}`);
    return `${closed.code} ${closed.reason}`.trim();
  }

  close() {
    this.ws.close(1000);
  }
}

function runTrigger() {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', trigger], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('close', (code) => {
      if (code !== 0) console.log(`note WS_TRIGGER_CMD exited ${code}${output.trim() ? `:\n${output.trimEnd()}` : ''}`);
      resolve(code);
    });
  });
}

// --- graphql-ws client: connect, subscribe, receive, complete ------------------------
const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: goodInit.payload,
  lazy: false,
  retryAttempts: 0,
  onNonLazyError: () => {},
});
const messages = []; // every message the client receives
client.on('message', (message) => messages.push(message));
let closedEvent = null;
client.on('closed', (event) => (closedEvent = event));

const connected = await check('connection_init is acknowledged (connection_ack)', () =>
  withTimeout(
    new Promise((resolve, reject) => {
      client.on('connected', (_socket, payload) => resolve(payload ? `payload ${JSON.stringify(payload)}` : ''));
      client.on('closed', (event) => reject(new Error(describe(event))));
    }),
    'connection_ack',
  ),
);

if (connected) {
  let unsubscribe = () => {};
  let serverCompleted = false;
  let triggered = null;
  const received = [];
  const subscribed = await check(`subscription receives ${expected} next message(s) without errors`, () =>
    withTimeout(
      new Promise((resolve, reject) => {
        unsubscribe = client.subscribe(
          { query },
          {
            next(value) {
              if (value.errors?.length) reject(new Error(`next with errors: ${JSON.stringify(value.errors)}`));
              received.push(value);
              if (received.length === expected) resolve(`first: ${JSON.stringify(received[0]).slice(0, 120)}`);
            },
            error: (err) => reject(new Error(describe(err))),
            complete() {
              serverCompleted = true;
              if (received.length < expected) {
                reject(new Error(`server completed after ${received.length} of ${expected} next messages`));
              }
            },
          },
        );
        if (trigger) triggered = sleep(triggerDelayMs).then(runTrigger);
      }),
      `${expected} next message(s) (got ${received.length} so far)`,
    ),
  );

  await check('subscription completes cleanly', async () => {
    if (!subscribed) throw new Error('skipped: the subscription did not deliver');
    await sleep(100); // a finite subscription may be completing right now
    if (serverCompleted) return 'completed by the server';
    unsubscribe(); // sends {"type": "complete", "id": ...}
    await sleep(500); // let in-flight messages drain
    const before = messages.length;
    await sleep(500);
    const late = messages.slice(before).filter((m) => m.type === 'next' || m.type === 'error');
    if (late.length) throw new Error(`server kept sending after complete: ${JSON.stringify(late[0])}`);
    if (closedEvent) throw new Error(`socket closed after complete: ${describe(closedEvent)}`);
    return 'client complete; no further messages; socket still open';
  });
  await triggered;
}
await client.dispose();

// --- raw sockets: ping/pong, close codes, error isolation -----------------------------
await check('ping is answered with pong', async () => {
  const raw = await RawSocket.open();
  try {
    if (raw.ws.protocol !== PROTOCOL) throw new Error(`server chose subprotocol "${raw.ws.protocol}"`);
    raw.send(goodInit);
    await raw.expectType('connection_ack');
    raw.send({ type: 'ping', payload: { check: 1 } });
    await raw.expectType('pong');
  } finally {
    raw.close();
  }
});

await check('connection_init with a bad token is closed with 4403', async () => {
  const raw = await RawSocket.open();
  raw.send({ type: 'connection_init', payload: { authorization: 'Bearer not.a.valid-token' } });
  return raw.expectClose(4403);
});

await check('connection_init without a token is closed with 4403', async () => {
  const raw = await RawSocket.open();
  raw.send({ type: 'connection_init', payload: {} });
  return raw.expectClose(4403);
});

await check('subscribe before connection_init is closed with 4401', async () => {
  const raw = await RawSocket.open();
  raw.send({ id: '1', type: 'subscribe', payload: { query } });
  return raw.expectClose(4401);
});

await check('a syntax error is an error message for its id; the socket stays open', async () => {
  const raw = await RawSocket.open();
  try {
    raw.send(goodInit);
    await raw.expectType('connection_ack');
    raw.send({ id: 'bad-1', type: 'subscribe', payload: { query: 'subscription {' } });
    const message = await raw.expectType('error');
    if (message.id !== 'bad-1') throw new Error(`error for id ${message.id}, expected bad-1`);
    raw.send({ type: 'ping' });
    await raw.expectType('pong');
    return JSON.stringify(message.payload).slice(0, 100);
  } finally {
    raw.close();
  }
});

console.log(failures ? `${failures} check(s) failed` : 'all checks passed');
process.exit(failures ? 1 : 0);
