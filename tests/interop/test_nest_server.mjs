// Our RPC client (through the proto-call tool) against a real NestJS 12.1.1
// TCP microservice running in this process on an ephemeral port: replies,
// non-ASCII payloads (UTF-16 frame lengths), RpcException errors, NestJS's
// "no matching handler" reply, events, metadata, deadlines and exit codes.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import {
  NO_HANDLER_MESSAGE, PROTO_CALL, binary, loadNest, runProtoCall, showRun, waitUntil,
} from './lib.mjs';

const TEST_TIMEOUT_MS = 30000;

let app;
let port;
const events = [];       // [{pattern, data, metadata}] seen by the event handlers
const metadataSeen = []; // metadata of requests to {cmd:'whoami'}

// Apply a (legacy TypeScript-style) method decorator in plain JavaScript.
function decorateMethod(cls, key, decorator) {
  const desc = Object.getOwnPropertyDescriptor(cls.prototype, key);
  const result = decorator(cls.prototype, key, desc);
  Object.defineProperty(cls.prototype, key, result || desc);
}

async function startNest() {
  const { common, core, microservices } = await loadNest();
  const { MessagePattern, EventPattern, RpcException, Transport, Payload, Ctx } = microservices;
  // Parameter decorators, called as functions: without them NestJS passes
  // the handler only its payload.
  const withContext = (cls, key) => {
    Payload()(cls.prototype, key, 0);
    Ctx()(cls.prototype, key, 1);
  };

  class InteropController {
    sum(data) {
      return (Array.isArray(data) ? data : []).reduce((a, b) => a + b, 0);
    }
    echo(data) {
      return data;
    }
    whoami(data, ctx) {
      const md = ctx.getMetadata() ?? null;
      metadataSeen.push(md);
      return { metadata: md, pattern: ctx.getPattern() };
    }
    fail() {
      throw new RpcException({ statusCode: 418, message: 'I am a teapot', code: 'TEAPOT' });
    }
    failPlain() {
      throw new RpcException('plain failure');
    }
    nothing() {
      return undefined;
    }
    slow() {
      return new Promise(() => {}); // never answers: the caller's deadline must fire
    }
    async later(data) {
      await new Promise((r) => setTimeout(r, 50));
      return { later: data };
    }
    seen(data, ctx) {
      events.push({ pattern: 'seen', data, metadata: ctx.getMetadata() ?? null });
    }
    seenObject(data) {
      events.push({ pattern: 'object', data });
    }
  }
  decorateMethod(InteropController, 'sum', MessagePattern({ cmd: 'sum' }));
  decorateMethod(InteropController, 'echo', MessagePattern({ cmd: 'echo' }));
  decorateMethod(InteropController, 'whoami', MessagePattern({ cmd: 'whoami' }));
  decorateMethod(InteropController, 'fail', MessagePattern({ cmd: 'fail' }));
  decorateMethod(InteropController, 'failPlain', MessagePattern({ cmd: 'fail_plain' }));
  decorateMethod(InteropController, 'nothing', MessagePattern({ cmd: 'nothing' }));
  decorateMethod(InteropController, 'slow', MessagePattern({ cmd: 'slow' }));
  decorateMethod(InteropController, 'later', MessagePattern({ role: 'x', cmd: 'later' }));
  decorateMethod(InteropController, 'seen', EventPattern('seen'));
  decorateMethod(InteropController, 'seenObject', EventPattern({ cmd: 'seen_object', v: 1 }));
  withContext(InteropController, 'whoami');
  withContext(InteropController, 'seen');
  common.Controller()(InteropController);

  class InteropModule {}
  common.Module({ controllers: [InteropController] })(InteropModule);

  app = await core.NestFactory.createMicroservice(InteropModule, {
    transport: Transport.TCP,
    options: { host: '127.0.0.1', port: 0 },
    logger: false,
  });
  await app.listen();
  port = app.unwrap().address().port;
}

function call(args, timeoutMs) {
  return runProtoCall(['--port', String(port), ...args], timeoutMs);
}

describe('proto-call against a NestJS TCP microservice', { timeout: 120000 }, () => {
  before(async () => {
    binary(PROTO_CALL); // fail clearly before anything else if it is not built
    await startNest();
  });

  after(async () => {
    if (app) await app.close();
  });

  test('ok reply', { timeout: TEST_TIMEOUT_MS }, async () => {
    const r = await call(['sum', '[1,2,3,4]']);
    assert.equal(r.code, 0, showRun(r));
    assert.equal(JSON.parse(r.stdout), 10, showRun(r));
  });

  test('object reply, cmd pattern given as JSON', { timeout: TEST_TIMEOUT_MS }, async () => {
    const r = await call(['{"cmd":"echo"}', '{"a":[1,{"b":null}],"t":true}']);
    assert.equal(r.code, 0, showRun(r));
    assert.deepEqual(JSON.parse(r.stdout), { a: [1, { b: null }], t: true });
  });

  test('multi-key pattern is matched (key order normalised)', { timeout: TEST_TIMEOUT_MS },
    async () => {
      const r = await call(['{"cmd":"later","role":"x"}', '"v"']);
      assert.equal(r.code, 0, showRun(r));
      assert.deepEqual(JSON.parse(r.stdout), { later: 'v' });
    });

  test('non-ASCII echo (UTF-16 lengths both ways)', { timeout: TEST_TIMEOUT_MS }, async () => {
    const payload = { name: 'café 😀', id: 'é😀', mixed: 'Ünï 漢字 😀😀 end' };
    const r = await call(['echo', JSON.stringify(payload)]);
    assert.equal(r.code, 0, showRun(r));
    assert.deepEqual(JSON.parse(r.stdout), payload);
    // A long one, so the frame spans several reads.
    const big = { s: 'é😀'.repeat(20000) };
    const r2 = await call(['echo', JSON.stringify(big)]);
    assert.equal(r2.code, 0, showRun(r2).slice(0, 2000));
    assert.deepEqual(JSON.parse(r2.stdout), big);
  });

  test('metadata.requestId and timeoutMs reach the NestJS handler',
    { timeout: TEST_TIMEOUT_MS }, async () => {
      const r = await call(['--request-id', 'interop-rid-1', 'whoami', '{}']);
      assert.equal(r.code, 0, showRun(r));
      const out = JSON.parse(r.stdout);
      assert.equal(out.metadata.requestId, 'interop-rid-1', showRun(r));
      assert.ok(Number(out.metadata.timeoutMs) > 0, showRun(r));
      assert.equal(out.pattern, '{"cmd":"whoami"}');
    });

  test('handler throwing RpcException: exit 1, error printed', { timeout: TEST_TIMEOUT_MS },
    async () => {
      const r = await call(['fail', '{}']);
      assert.equal(r.code, 1, showRun(r));
      assert.deepEqual(JSON.parse(r.stdout),
        { statusCode: 418, message: 'I am a teapot', code: 'TEAPOT' });
      const r2 = await call(['fail_plain']);
      assert.equal(r2.code, 1, showRun(r2));
      assert.deepEqual(JSON.parse(r2.stdout), { status: 'error', message: 'plain failure' });
    });

  test('unknown pattern: NestJS no-handler error, exit 1', { timeout: TEST_TIMEOUT_MS },
    async () => {
      const r = await call(['no_such_cmd', '{}']);
      assert.equal(r.code, 1, showRun(r));
      assert.equal(JSON.parse(r.stdout), NO_HANDLER_MESSAGE);
    });

  test('void reply prints nothing, exit 0', { timeout: TEST_TIMEOUT_MS }, async () => {
    const r = await call(['nothing']);
    assert.equal(r.code, 0, showRun(r));
    assert.equal(r.stdout, '', showRun(r));
  });

  test('event reaches the NestJS event handler', { timeout: TEST_TIMEOUT_MS }, async () => {
    const data = { userId: 'u1', note: 'é😀', timestamp: '2026-01-01T00:00:00.000Z' };
    const r = await call(['--event', '--request-id', 'evt-rid-7', 'seen',
      JSON.stringify(data)]);
    assert.equal(r.code, 0, showRun(r));
    assert.equal(r.stdout, '', showRun(r));
    const ev = await waitUntil(() => events.find((e) => e.pattern === 'seen' &&
      e.data.userId === 'u1'), 10000, 'the NestJS event handler to run');
    assert.deepEqual(ev.data, data);
    assert.equal(ev.metadata?.requestId, 'evt-rid-7');
  });

  test('event with an object pattern', { timeout: TEST_TIMEOUT_MS }, async () => {
    const r = await call(['--event', '{"v":1,"cmd":"seen_object"}', '{"k":"obj"}']);
    assert.equal(r.code, 0, showRun(r));
    await waitUntil(() => events.find((e) => e.pattern === 'object' && e.data.k === 'obj'),
      10000, 'the object-pattern event handler to run');
  });

  test('deadline: exit 4 when the handler never answers', { timeout: TEST_TIMEOUT_MS },
    async () => {
      const t0 = Date.now();
      const r = await call(['--timeout', '300', 'slow', '{}']);
      assert.equal(r.code, 4, showRun(r));
      assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
    });

  test('unavailable: exit 3 when nothing listens', { timeout: TEST_TIMEOUT_MS }, async () => {
    const srv = net.createServer();
    await new Promise((r) => srv.listen(0, '127.0.0.1', r));
    const closedPort = srv.address().port;
    await new Promise((r) => srv.close(r));
    const r = await runProtoCall(['--port', String(closedPort), '--timeout', '2000', 'sum',
      '[1]']);
    assert.equal(r.code, 3, showRun(r));
    const r2 = await runProtoCall(['--port', String(closedPort), '--timeout', '500',
      '--event', 'seen', '{}']);
    assert.equal(r2.code, 3, showRun(r2));
  });

  test('usage errors: exit 2; --help: exit 0', { timeout: TEST_TIMEOUT_MS }, async () => {
    for (const args of [[], ['--port'], ['--port', 'x', 'sum'], ['--bogus', 'sum'],
      ['sum', '{not json'], ['{"cmd":', '1'], ['a', 'b', 'c'], ['--timeout', '0', 'sum']]) {
      const r = await runProtoCall(args);
      assert.equal(r.code, 2, `${JSON.stringify(args)}: ${showRun(r)}`);
      assert.equal(r.stdout, '', `${JSON.stringify(args)}: ${showRun(r)}`);
    }
    const h = await runProtoCall(['--help']);
    assert.equal(h.code, 0, showRun(h));
    assert.match(h.stdout, /Usage: proto-call/);
    assert.match(h.stdout, /--event/);
  });

  test('many calls in parallel', { timeout: TEST_TIMEOUT_MS }, async () => {
    const runs = await Promise.all(Array.from({ length: 8 }, (_, i) =>
      call(['sum', JSON.stringify([i, i])])));
    runs.forEach((r, i) => {
      assert.equal(r.code, 0, showRun(r));
      assert.equal(JSON.parse(r.stdout), 2 * i);
    });
  });
});
