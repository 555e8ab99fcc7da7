// Our Redis events against a real NestJS 12.1.1 Redis transport (ioredis), in
// both directions, on a redis-server this test starts on a free port:
// (a) a NestJS Redis microservice's @EventPattern('order_created') handler
//     receives the event our order service publishes when an order is
//     created (through proto-call), with the data unchanged and our metadata;
// (b) events a NestJS ClientProxy (Transport.REDIS) emits are stored by our
//     notification daemon and served by get_notifications;
// (c) every event pattern, in the shape the tutorial's NestJS services emit
//     it (PROTOCOL.md section 7: no currency, no metadata, JavaScript
//     numbers with fractions), becomes one notification, and a redelivery of
//     one stores nothing new.
// Every wait polls inside a deadline; children are stopped by pid.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';

import {
  Daemon, PROTO_CALL, START_TIMEOUT_MS, STOP_TIMEOUT_MS, USER_SERVICE, binary, loadNest,
  removeDir, runProtoCall, showRun, tempDir, waitUntil,
} from './lib.mjs';

const TEST_TIMEOUT_MS = 60000;
const EVENT_TIMEOUT_MS = 15000;
const ORDER_SERVICE = 'services/order/order-service';
const PAYMENT_SERVICE = 'services/payment/payment-service';
const NOTIFICATION_SERVICE = 'services/notification/notification-service';
const INVENTORY_SERVICE = 'services/inventory/inventory-service';
const START_ATTEMPTS = 3; // free-port races: try another port this many times
const EVT_ID = /^evt_[0-9a-f]{32}$/;
const DIG_ID = /^dig_[0-9a-f]{32}$/; // derived from content: no eventId was sent
const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

// --- redis-server ----------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// One inline command over a fresh connection; resolves the reply text once
// complete(text) holds (default: one whole line), or null on any error or
// after timeoutMs.
function redisLine(port, command, complete = (t) => t.includes('\r\n'), timeoutMs = 1000) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (v) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    sock.on('error', () => done(null));
    sock.on('connect', () => sock.write(`${command}\r\n`));
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      if (complete(buf)) done(buf);
    });
  });
}

// PUBSUB NUMSUB <channel>: how many clients are subscribed to it.
async function numSub(port, channel) {
  // The reply: *2\r\n$<n>\r\n<channel>\r\n:<count>\r\n
  const count = /:(\d+)\r\n/;
  const reply = await redisLine(port, `PUBSUB NUMSUB ${channel}`, (t) => count.test(t));
  return reply ? Number(count.exec(reply)[1]) : -1;
}

class RedisServer {
  constructor() {
    this.port = null;
    this.child = null;
    this.out = [];
  }

  async start(timeoutMs = START_TIMEOUT_MS) {
    let last = '';
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      this.port = await freePort();
      this.out = [];
      this.child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1',
        '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
      this.child.stdout.on('data', (c) => this.out.push(c.toString('utf8')));
      this.child.stderr.on('data', (c) => this.out.push(c.toString('utf8')));
      this.exited = new Promise((resolve) => {
        this.child.on('exit', (code, signal) => resolve({ code, signal }));
      });
      const spawnError = new Promise((resolve) => this.child.on('error', resolve));
      const deadline = Date.now() + timeoutMs;
      let exit = null;
      let err = null;
      this.exited.then((e) => { exit = e; });
      spawnError.then((e) => { err = e; });
      while (Date.now() < deadline && exit === null && err === null) {
        if ((await redisLine(this.port, 'PING')) === '+PONG\r\n') return this;
        await new Promise((r) => setTimeout(r, 20)); // polling interval
      }
      if (err) {
        throw new Error(`cannot run redis-server (is it installed and on PATH?): ${err.message}`);
      }
      if (exit === null) {
        await this.stop();
        throw new Error(`redis-server did not answer PING on port ${this.port} within ` +
          `${timeoutMs} ms\n${this.out.join('')}`);
      }
      last = `redis-server exited (${JSON.stringify(exit)}) on port ${this.port}:\n` +
        this.out.join('');
      this.child = null;
      if (!last.includes('Address already in use')) break;
    }
    throw new Error(last);
  }

  async stop(timeoutMs = STOP_TIMEOUT_MS) {
    if (!this.child) return;
    const child = this.child;
    this.child = null;
    if (child.exitCode !== null || child.signalCode !== null) return;
    process.kill(child.pid, 'SIGTERM');
    let timer;
    const timedOut = new Promise((r) => { timer = setTimeout(() => r('timeout'), timeoutMs); });
    const r = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (r === 'timeout') {
      process.kill(child.pid, 'SIGKILL');
      await this.exited;
    }
  }
}

// --- the stack ---------------------------------------------------------------

let nest;
let redis;
let app;            // the NestJS Redis microservice
let client;         // the NestJS Redis ClientProxy
let rawSub;         // a plain ioredis subscriber, for the bytes on the channel
const daemons = {};
const dataDirs = [];
const nestEvents = [];   // {data, channel, metadata} seen by the NestJS handler
const rawMessages = [];  // {channel, payload Buffer} seen by the plain subscriber
let seq = 0;

const unique = (p) => `${p}-${process.pid}-${++seq}`;

async function startDaemon(name, rel, portVar, extraEnv = {}) {
  const dir = tempDir();
  dataDirs.push(dir);
  const d = new Daemon(name, [binary(rel)], {
    LISTEN_HOST: '127.0.0.1', [portVar]: '0', DATA_DIR: dir,
    REDIS_HOST: '127.0.0.1', REDIS_PORT: String(redis.port), LOG_LEVEL: 'debug',
    ...extraEnv,
  });
  daemons[name] = d;
  await d.start(['rpc']);
  return d;
}

// proto-call against one of our daemons; the parsed reply, or a clear error.
async function call(daemon, cmd, data, extra = []) {
  const r = await runProtoCall(['--port', String(daemon.port), '--timeout', '8000', ...extra,
    cmd, JSON.stringify(data)], 10000);
  assert.equal(r.code, 0, `${cmd} on ${daemon.name}: ${showRun(r)}`);
  return JSON.parse(r.stdout);
}

// Apply a (legacy TypeScript-style) method decorator in plain JavaScript.
function decorateMethod(cls, key, decorator) {
  const desc = Object.getOwnPropertyDescriptor(cls.prototype, key);
  const result = decorator(cls.prototype, key, desc);
  Object.defineProperty(cls.prototype, key, result || desc);
}

async function startNestServer() {
  const { common, core, microservices } = nest;
  const { EventPattern, Payload, Ctx, Transport } = microservices;

  class OrderEventsController {
    orderCreated(data, ctx) {
      nestEvents.push({ data, channel: ctx.getChannel(), metadata: ctx.getMetadata() ?? null });
    }
  }
  decorateMethod(OrderEventsController, 'orderCreated', EventPattern('order_created'));
  // Parameter decorators, called as functions: the handler also gets the context.
  Payload()(OrderEventsController.prototype, 'orderCreated', 0);
  Ctx()(OrderEventsController.prototype, 'orderCreated', 1);
  common.Controller()(OrderEventsController);

  class OrderEventsModule {}
  common.Module({ controllers: [OrderEventsController] })(OrderEventsModule);

  app = await core.NestFactory.createMicroservice(OrderEventsModule, {
    transport: Transport.REDIS,
    options: { host: '127.0.0.1', port: redis.port },
    logger: false,
  });
  await app.listen();
}

async function notificationsOf(userId) {
  return call(daemons.notification, 'get_notifications', { userId, page: 1, limit: 100 });
}

describe('NestJS Redis transport and our events', { timeout: 180000 }, () => {
  before(async () => {
    for (const rel of [USER_SERVICE, PAYMENT_SERVICE, ORDER_SERVICE, NOTIFICATION_SERVICE,
      INVENTORY_SERVICE, PROTO_CALL]) {
      binary(rel); // fail clearly before anything else if one is not built
    }
    nest = await loadNest();
    // NestJS's ClientProxy logs "Connected to Redis" through the default
    // logger: keep only warnings and errors.
    nest.common.Logger.overrideLogger(['error', 'warn']);
    redis = new RedisServer();
    await redis.start();

    const { default: Redis } = await import('ioredis');
    rawSub = new Redis({ host: '127.0.0.1', port: redis.port, lazyConnect: true,
      retryStrategy: () => null, maxRetriesPerRequest: 1 });
    rawSub.on('error', () => {});
    await rawSub.connect();
    rawSub.on('messageBuffer', (ch, payload) => rawMessages.push({
      channel: ch.toString('utf8'), payload }));
    await rawSub.subscribe('order_created'); // resolves once Redis confirmed it

    await startDaemon('user', USER_SERVICE, 'USER_SERVICE_PORT');
    await startDaemon('payment', PAYMENT_SERVICE, 'PAYMENT_SERVICE_PORT');
    await startDaemon('notification', NOTIFICATION_SERVICE, 'NOTIFICATION_SERVICE_PORT');
    // The order saga reserves and prices the items there: the catalogue
    // holds the products the test orders, at the prices it sends.
    await startDaemon('inventory', INVENTORY_SERVICE, 'INVENTORY_SERVICE_PORT');
    for (const [id, price] of [['p1', 1999], ['café-😀', 0]]) {
      await call(daemons.inventory, 'create_product', { id, name: id, price, stock: 100 });
    }
    await startDaemon('order', ORDER_SERVICE, 'ORDER_SERVICE_PORT', {
      USER_SERVICE_HOST: '127.0.0.1', USER_SERVICE_PORT: String(daemons.user.port),
      PAYMENT_SERVICE_HOST: '127.0.0.1', PAYMENT_SERVICE_PORT: String(daemons.payment.port),
      INVENTORY_SERVICE_HOST: '127.0.0.1', INVENTORY_SERVICE_PORT: String(daemons.inventory.port),
    });
    // The notification daemon has every channel subscribed.
    await waitUntil(async () => {
      const h = await call(daemons.notification, 'health', {});
      return h.redis?.subscribed === true;
    }, EVENT_TIMEOUT_MS, 'notification redis.subscribed');

    await startNestServer();
    // listen() resolves before SUBSCRIBE is confirmed: wait until Redis counts
    // the NestJS subscriber too (the plain one and our notification daemon
    // are the other two).
    await waitUntil(async () => (await numSub(redis.port, 'order_created')) === 3,
      EVENT_TIMEOUT_MS, 'three subscribers on order_created');

    const { ClientProxyFactory, Transport } = nest.microservices;
    client = ClientProxyFactory.create({
      transport: Transport.REDIS, options: { host: '127.0.0.1', port: redis.port },
    });
    await client.connect();
  });

  after(async () => {
    const errors = [];
    const attempt = async (f) => {
      try { await f(); } catch (e) { errors.push(e); }
    };
    await attempt(async () => { if (client) await client.close(); });
    await attempt(async () => { if (app) await app.close(); });
    await attempt(async () => { if (rawSub) rawSub.disconnect(); });
    for (const name of ['order', 'inventory', 'notification', 'payment', 'user']) {
      await attempt(async () => { if (daemons[name]) await daemons[name].stop(); });
    }
    await attempt(async () => { if (redis) await redis.stop(); });
    dataDirs.forEach(removeDir);
    if (errors.length) throw errors[0];
  });

  test('a NestJS @EventPattern handler receives our order_created unchanged',
    { timeout: TEST_TIMEOUT_MS }, async () => {
      const user = await call(daemons.user, 'create_user',
        { email: `${unique('redis')}@example.com`, name: 'Zoé 😀' });
      const rid = unique('nest-redis');
      const items = [{ productId: 'p1', quantity: 2, price: 1999 },
        { productId: 'café-😀', quantity: 1, price: 0 }];
      const order = await call(daemons.order, 'create_order',
        { userId: user.id, items, paymentMethod: 'tok_visa' }, ['--request-id', rid]);
      assert.equal(order.status, 'confirmed', JSON.stringify(order));
      assert.equal(order.totalAmount, 3998);

      const ev = await waitUntil(() => nestEvents.find((e) => e.data?.orderId === order.id),
        EVENT_TIMEOUT_MS, 'the NestJS order_created handler to run');
      assert.deepEqual(ev.data, {
        orderId: order.id, userId: user.id, totalAmount: 3998, currency: 'USD', items,
      });
      assert.equal(ev.channel, 'order_created');
      assert.equal(ev.metadata?.requestId, rid, JSON.stringify(ev.metadata));
      assert.match(ev.metadata?.eventId ?? '', EVT_ID);
      assert.match(ev.metadata?.occurredAt ?? '', ISO_MS);

      // What NestJS handed its handler is exactly what was on the channel.
      const raw = await waitUntil(() => rawMessages.find((m) =>
        JSON.parse(m.payload.toString('utf8')).data?.orderId === order.id),
      EVENT_TIMEOUT_MS, 'the plain subscriber to see order_created');
      const msg = JSON.parse(raw.payload.toString('utf8'));
      assert.deepEqual(Object.keys(msg), ['pattern', 'data', 'metadata']);
      assert.equal(msg.pattern, 'order_created');
      assert.deepEqual(ev.data, msg.data);
      assert.deepEqual(ev.metadata, msg.metadata);
      // Byte for byte what JSON.stringify (NestJS's ClientRedis) would send.
      assert.equal(raw.payload.toString('utf8'), JSON.stringify(msg));
      assert.equal(nestEvents.filter((e) => e.data?.orderId === order.id).length, 1);
    });

  test('our notification daemon stores events a NestJS ClientProxy emits',
    { timeout: TEST_TIMEOUT_MS }, async () => {
      const { firstValueFrom } = nest.rxjs;
      const userId = unique('user');
      const orderId = unique('order');
      const created = {
        orderId, userId, totalAmount: 3998, currency: 'USD',
        items: [{ productId: 'p1', quantity: 2, price: 1999 }],
      };
      await firstValueFrom(client.emit('order_created', created), { defaultValue: null });
      const failed = { orderId, userId, reason: 'card_declined', amount: 3998, currency: 'USD' };
      await firstValueFrom(client.emit('payment_failed', failed), { defaultValue: null });

      const page = await waitUntil(async () => {
        const p = await notificationsOf(userId);
        return p.total >= 2 ? p : null;
      }, EVENT_TIMEOUT_MS, `two notifications for ${userId}`);
      assert.equal(page.total, 2, JSON.stringify(page));
      const byType = Object.fromEntries(page.notifications.map((n) => [n.type, n]));
      assert.deepEqual(Object.keys(byType).sort(), ['order_confirmation', 'payment_failed']);
      const oc = byType.order_confirmation;
      assert.equal(oc.message, `Your order ${orderId} for 39.98 USD has been received`);
      assert.equal(oc.userId, userId);
      assert.equal(oc.orderId, orderId);
      assert.equal(oc.eventPattern, 'order_created');
      assert.deepEqual(oc.data, created);
      // A plain ClientProxy.emit() sends no metadata: an id derived from the content.
      assert.match(oc.eventId, DIG_ID);
      assert.equal(oc.requestId, null);
      assert.match(byType.payment_failed.message, /card_declined/);
      assert.ok(byType.payment_failed.message.includes(orderId));

      // The NestJS microservice on the same channel got the emitted event too.
      const ev = await waitUntil(() => nestEvents.find((e) => e.data?.orderId === orderId),
        EVENT_TIMEOUT_MS, 'the NestJS handler to see the ClientProxy event');
      assert.deepEqual(ev.data, created);
    });
  test('every tutorial event shape a NestJS ClientProxy emits becomes one notification',
    { timeout: TEST_TIMEOUT_MS }, async () => {
      const { firstValueFrom } = nest.rxjs;
      const emit = (pattern, data) =>
        firstValueFrom(client.emit(pattern, data), { defaultValue: null });
      // Ids as the tutorial's generateId() makes them.
      const userId = `user_${Date.now()}_${unique('t')}`;
      const o1 = `order_${Date.now()}_${unique('a')}`;
      const o2 = `order_${Date.now()}_${unique('b')}`;
      const o3 = `order_${Date.now()}_${unique('c')}`;
      const pay = `payment_${Date.now()}_${unique('p')}`;
      // [pattern, data exactly as the tutorial's services emit it, type, message]
      const shapes = [
        ['order_created', { orderId: o1, userId, totalAmount: 3998,
          items: [{ productId: 'p1', quantity: 2, price: 1999 }] },
        'order_confirmation', `Your order ${o1} for 39.98 USD has been received`],
        // The tutorial's reduce() over prices like 10.5: a fractional total.
        ['order_created', { orderId: o2, userId, totalAmount: 10.5 * 2 + 0.25,
          items: [{ productId: 'p1', quantity: 2, price: 10.5 },
            { productId: 'p2', quantity: 1, price: 0.25 }] },
        'order_confirmation', `Your order ${o2} for 0.2125 USD has been received`],
        // The tutorial reads previousStatus after assigning: it equals newStatus.
        ['order_status_changed', { orderId: o1, userId, newStatus: 'shipped',
          previousStatus: 'shipped' },
        'order_status', `Your order ${o1} is now shipped`],
        ['order_completed', { orderId: o1, userId, totalAmount: 3998 },
          'order_completed', `Your order ${o1} for 39.98 USD is complete`],
        ['order_failed', { orderId: o3, userId, reason: `User not found: ${userId}` },
          'order_failed', `Your order ${o3} could not be completed: User not found: ${userId}`],
        ['payment_completed', { paymentId: pay, orderId: o2, userId, amount: 21.25 },
          'payment_receipt', `We received your payment of 0.2125 USD for order ${o2}`],
        ['payment_failed', { orderId: o3, userId,
          reason: 'Amount 150000.5 exceeds limit of 100000' },
        'payment_failed',
        `Your payment for order ${o3} failed: Amount 150000.5 exceeds limit of 100000`],
      ];
      const before = (await call(daemons.notification, 'health', {})).events;
      for (const [pattern, data] of shapes) await emit(pattern, data);
      // A redelivery of the first, then a marker: events on one connection
      // arrive in order, so once the marker is stored the repeat was handled.
      await emit(shapes[0][0], structuredClone(shapes[0][1]));
      const marker = { orderId: o3, userId, newStatus: 'cancelled', previousStatus: 'cancelled' };
      await emit('order_status_changed', marker);

      const page = await waitUntil(async () => {
        const p = await notificationsOf(userId);
        return p.notifications.some((n) => n.data?.newStatus === 'cancelled') ? p : null;
      }, EVENT_TIMEOUT_MS, `the marker notification for ${userId}`);
      assert.equal(page.total, shapes.length + 1, JSON.stringify(page.notifications, null, 1));
      for (const [pattern, data, type, message] of shapes) {
        const n = page.notifications.find((x) => x.eventPattern === pattern &&
          x.message === message);
        assert.ok(n, `no ${pattern} notification "${message}" in ` +
          JSON.stringify(page.notifications.map((x) => x.message)));
        assert.equal(n.type, type);
        assert.equal(n.userId, userId);
        assert.equal(n.orderId, data.orderId);
        assert.match(n.eventId, DIG_ID);
        assert.equal(n.requestId, null);
        // Stored as sent: the fractional JavaScript numbers come back equal.
        assert.deepEqual(n.data, data);
      }
      assert.equal(new Set(page.notifications.map((n) => n.eventId)).size, page.total);
      // The counter moves after the COMMIT, which a read may precede by a moment.
      const after = await waitUntil(async () => {
        const e = (await call(daemons.notification, 'health', {})).events;
        return e.stored - before.stored >= shapes.length + 1 ? e : null;
      }, EVENT_TIMEOUT_MS, 'the stored counter');
      assert.equal(after.duplicates - before.duplicates, 1, JSON.stringify(after));
      assert.equal(after.invalid, before.invalid, JSON.stringify(after));
    });
});
