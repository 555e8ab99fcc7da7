// NestJS and the inventory, both ways:
// (1) a real NestJS 12.1.1 ClientProxy (TCP) against our inventory daemon:
//     create/get product, all-or-nothing and idempotent reserve, idempotent
//     release (an unknown order too), commit, and our error objects (409
//     OUT_OF_STOCK with details, 404) as the rxjs error of firstValueFrom;
// (2) the tutorial-style NestJS inventory (nest_inventory.mjs) as our
//     RPC client sees it: its {error, statusCode} replies and NestJS's
//     no-handler reply to commit_inventory, which the saga relies on;
// (3) our order saga (real user, payment, order daemons, real redis-server)
//     against that NestJS inventory: a confirmed order priced by the NestJS
//     catalogue, out of stock (cancelled, nothing charged), a client price
//     that differs (409 PRICE_CHANGED, stock released), a declined card
//     (cancelled card_declined, stock released).
// Daemons on ephemeral ports, stopped by pid; every wait has a deadline.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  Daemon, NO_HANDLER_MESSAGE, PROTO_CALL, RedisServer, USER_SERVICE, binary, loadNest,
  removeDir, runProtoCall, showRun, tempDir,
} from './lib.mjs';
import { startNestInventory } from './nest_inventory.mjs';

const TEST_TIMEOUT_MS = 30000;
const CALL_TIMEOUT_MS = 10000;
const INVENTORY_SERVICE = 'services/inventory/inventory-service';
const ORDER_SERVICE = 'services/order/order-service';
const PAYMENT_SERVICE = 'services/payment/payment-service';
const ORDER_ID = /order_[0-9a-f]{32}/;
const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

let nest;
let seq = 0;
const unique = (p) => `${p}-${process.pid}-${++seq}`;

// A connected NestJS TCP ClientProxy to 127.0.0.1:port.
async function nestClient(port) {
  const { ClientProxyFactory, Transport } = nest.microservices;
  const c = ClientProxyFactory.create({
    transport: Transport.TCP, options: { host: '127.0.0.1', port },
  });
  await c.connect();
  return c;
}

// One request through a NestJS client, bounded in time.
function send(client, cmd, data) {
  const { firstValueFrom, timeout } = nest.rxjs;
  return firstValueFrom(client.send({ cmd }, data).pipe(timeout(CALL_TIMEOUT_MS)));
}

// The rxjs error of a request that must fail.
async function sendError(client, cmd, data) {
  let reply;
  try {
    reply = await send(client, cmd, data);
  } catch (err) {
    return err;
  }
  throw new assert.AssertionError({ message: `${cmd} answered ${JSON.stringify(reply)}, ` +
    'expected an error' });
}

async function startDaemon(dirs, name, rel, portVar, env = {}) {
  const dir = tempDir();
  dirs.push(dir);
  const d = new Daemon(name, [binary(rel)], {
    LISTEN_HOST: '127.0.0.1', [portVar]: '0', DATA_DIR: dir, ...env,
  });
  await d.start(['rpc']);
  return d;
}

// Run each cleanup even if one fails; rethrow the first failure.
async function cleanUp(steps) {
  const errors = [];
  for (const f of steps) {
    try { await f(); } catch (e) { errors.push(e); }
  }
  if (errors.length) throw errors[0];
}

describe('NestJS ClientProxy against our inventory service', { timeout: 120000 }, () => {
  const dirs = [];
  let inv;
  let client;

  const product = (id) => send(client, 'get_product', { id });

  before(async () => {
    binary(INVENTORY_SERVICE); // fail clearly if not built
    nest = await loadNest();
    inv = await startDaemon(dirs, 'inventory', INVENTORY_SERVICE, 'INVENTORY_SERVICE_PORT');
    client = await nestClient(inv.port);
  });

  after(() => cleanUp([
    async () => { if (client) await client.close(); },
    async () => { if (inv) await inv.stop(); },
    () => dirs.forEach(removeDir),
  ]));

  test('health', { timeout: TEST_TIMEOUT_MS }, async () => {
    assert.deepEqual(await send(client, 'health', {}),
      { status: 'ok', service: 'inventory', db: 'ok' });
  });

  test('create_product, get_product, 404 and 409', { timeout: TEST_TIMEOUT_MS }, async () => {
    const id = unique('café-😀');
    const p = await send(client, 'create_product', { id, name: 'Café 😀', price: 1999, stock: 10 });
    assert.equal(p.id, id);
    assert.equal(p.name, 'Café 😀');
    assert.equal(p.price, 1999);
    assert.equal(p.currency, 'USD');
    assert.deepEqual([p.stock, p.reserved, p.available], [10, 0, 10]);
    assert.match(p.createdAt, ISO_MS);
    assert.deepEqual(await product(id), p);

    const dup = await sendError(client, 'create_product', { id, name: 'Again', price: 1 });
    assert.equal(dup.statusCode, 409, JSON.stringify(dup));
    assert.equal(dup.code, 'PRODUCT_EXISTS');
    const missing = await sendError(client, 'get_product', { id: unique('ghost') });
    assert.equal(missing.statusCode, 404, JSON.stringify(missing));
    assert.equal(missing.code, 'PRODUCT_NOT_FOUND');
    assert.equal(typeof missing.message, 'string');
    const bad = await sendError(client, 'create_product', { name: 'X', price: -1 });
    assert.equal(bad.statusCode, 400, JSON.stringify(bad));
    assert.ok(bad.details.some((d) => d.field === 'price'), JSON.stringify(bad));
  });

  test('reserve: all or none, OUT_OF_STOCK details, 404; idempotent retry; commit',
    { timeout: TEST_TIMEOUT_MS }, async () => {
      const a = unique('a');
      const b = unique('b');
      await send(client, 'create_product', { id: a, name: 'A', price: 250, stock: 10 });
      await send(client, 'create_product', { id: b, name: 'B', price: 1000, stock: 3 });

      const orderId = unique('order');
      const short = await sendError(client, 'reserve_inventory', { orderId, items: [
        { productId: a, quantity: 2 }, { productId: b, quantity: 5 }] });
      assert.equal(short.statusCode, 409, JSON.stringify(short));
      assert.equal(short.code, 'OUT_OF_STOCK');
      assert.ok(short.message.includes(b), JSON.stringify(short));
      assert.deepEqual(short.details.map((d) => [d.field, d.productId, d.requested, d.available]),
        [['items', b, 5, 3]], JSON.stringify(short));
      assert.equal((await product(a)).reserved, 0, 'a is not held either');

      const ghost = unique('ghost');
      const nf = await sendError(client, 'reserve_inventory', { orderId, items: [
        { productId: a, quantity: 1 }, { productId: ghost, quantity: 1 }] });
      assert.equal(nf.statusCode, 404, JSON.stringify(nf));
      assert.equal(nf.code, 'PRODUCT_NOT_FOUND');
      assert.deepEqual(nf.details.map((d) => d.productId), [ghost], JSON.stringify(nf));

      // The failed tries left no trace: the same order id reserves now.
      const items = [{ productId: a, quantity: 2 }, { productId: b, quantity: 3 }];
      const r = await send(client, 'reserve_inventory', { orderId, items });
      assert.equal(r.orderId, orderId);
      assert.equal(r.state, 'reserved');
      assert.deepEqual(r.items, [
        { productId: a, quantity: 2, price: 250, currency: 'USD' },
        { productId: b, quantity: 3, price: 1000, currency: 'USD' },
      ].sort((x, y) => (x.productId < y.productId ? -1 : 1)));
      // A retry, items reordered, returns the first result and holds nothing twice.
      const again = await send(client, 'reserve_inventory',
        { orderId, items: [...items].reverse() });
      assert.deepEqual(again, r);
      assert.deepEqual([(await product(a)).reserved, (await product(b)).available], [2, 0]);
      const other = await sendError(client, 'reserve_inventory',
        { orderId, items: [{ productId: a, quantity: 1 }] });
      assert.equal(other.code, 'RESERVATION_MISMATCH', JSON.stringify(other));

      const done = await send(client, 'commit_inventory', { orderId });
      assert.equal(done.state, 'committed', JSON.stringify(done));
      const pa = await product(a);
      assert.deepEqual([pa.stock, pa.reserved, pa.available], [8, 0, 8]);
      assert.equal((await send(client, 'commit_inventory', { orderId })).state, 'committed');
      const late = await sendError(client, 'release_inventory', { orderId });
      assert.equal(late.code, 'RESERVATION_COMMITTED', JSON.stringify(late));
      const none = await sendError(client, 'commit_inventory', { orderId: unique('none') });
      assert.equal(none.statusCode, 404, JSON.stringify(none));
      assert.equal(none.code, 'RESERVATION_NOT_FOUND');
    });

  test('release: idempotent, unknown order ok, a late reserve refused',
    { timeout: TEST_TIMEOUT_MS }, async () => {
      const c = unique('c');
      await send(client, 'create_product', { id: c, name: 'C', price: 5, stock: 4 });
      const orderId = unique('order');
      await send(client, 'reserve_inventory', { orderId, items: [{ productId: c, quantity: 4 }] });
      assert.equal((await product(c)).available, 0);
      for (let i = 0; i < 2; i++) {
        const rel = await send(client, 'release_inventory', { orderId });
        assert.equal(rel.state, 'released', JSON.stringify(rel));
      }
      assert.deepEqual([(await product(c)).reserved, (await product(c)).available], [0, 4]);

      const unknown = unique('order');
      const rel = await send(client, 'release_inventory', { orderId: unknown });
      assert.deepEqual(rel, { orderId: unknown, state: 'released', items: [] });
      const lateReserve = await sendError(client, 'reserve_inventory',
        { orderId: unknown, items: [{ productId: c, quantity: 1 }] });
      assert.equal(lateReserve.code, 'RESERVATION_RELEASED', JSON.stringify(lateReserve));
      assert.equal((await product(c)).reserved, 0);
    });
});

describe('the tutorial-style NestJS inventory (nest_inventory.mjs)', { timeout: 60000 }, () => {
  let inv;

  // proto-call against the NestJS inventory: {code, reply}.
  async function call(cmd, data) {
    const r = await runProtoCall(['--port', String(inv.port), '--timeout', '5000', cmd,
      JSON.stringify(data)]);
    assert.ok(r.code === 0 || r.code === 1, showRun(r));
    return { code: r.code, reply: JSON.parse(r.stdout) };
  }

  before(async () => {
    binary(PROTO_CALL);
    nest = await loadNest();
    inv = await startNestInventory();
  });

  after(async () => { if (inv) await inv.close(); });

  test('its replies and {error, statusCode} objects, as our client reads them',
    { timeout: TEST_TIMEOUT_MS }, async () => {
      assert.deepEqual((await call('health', {})).reply, { status: 'ok', service: 'inventory' });
      const p = (await call('create_product', { id: 'p1', name: 'One', price: 1999, stock: 5 }))
        .reply;
      assert.deepEqual([p.id, p.price, p.stock], ['p1', 1999, 5]);
      assert.deepEqual((await call('get_product', { id: 'nope' })).reply,
        { error: 'Product not found', statusCode: 404 });

      const items = [{ productId: 'p1', quantity: 2 }];
      const r = await call('reserve_inventory', { orderId: 'o1', items });
      assert.deepEqual(r.reply, { orderId: 'o1',
        items: [{ productId: 'p1', quantity: 2, price: 1999 }] });
      assert.deepEqual((await call('reserve_inventory', { orderId: 'o1', items })).reply, r.reply);
      assert.equal((await call('get_product', { id: 'p1' })).reply.stock, 3);
      assert.deepEqual((await call('reserve_inventory', { orderId: 'o2', items: [
        { productId: 'p1', quantity: 1 }, { productId: 'p9', quantity: 1 }] })).reply,
      { error: 'Product not found: p9', statusCode: 404 });
      assert.deepEqual((await call('reserve_inventory',
        { orderId: 'o2', items: [{ productId: 'p1', quantity: 4 }] })).reply,
      { error: 'Insufficient stock for product: p1', statusCode: 409 });
      assert.equal((await call('get_product', { id: 'p1' })).reply.stock, 3, 'all or nothing');

      for (let i = 0; i < 2; i++) {
        assert.deepEqual((await call('release_inventory', { orderId: 'o1' })).reply,
          { orderId: 'o1', status: 'released' });
      }
      assert.equal((await call('get_product', { id: 'p1' })).reply.stock, 5);
      assert.deepEqual((await call('release_inventory', { orderId: 'o3' })).reply,
        { orderId: 'o3', status: 'released' });
    });

  test('commit_inventory: NestJS\'s no-handler reply (the saga takes it as committed)',
    { timeout: TEST_TIMEOUT_MS }, async () => {
      assert.deepEqual(await call('commit_inventory', { orderId: 'o1' }),
        { code: 1, reply: NO_HANDLER_MESSAGE });
    });
});

describe('our order saga against the NestJS inventory', { timeout: 180000 }, () => {
  const dirs = [];
  const daemons = {};
  let redis;
  let inv;          // the NestJS inventory, in this process
  let orders;       // NestJS ClientProxy -> our order service
  let payments;     // NestJS ClientProxy -> our payment service
  let catalogue;    // NestJS ClientProxy -> the NestJS inventory
  let userId;

  const stock = async (id) => (await send(catalogue, 'get_product', { id })).stock;

  async function paymentOf(orderId) {
    try {
      return await send(payments, 'get_payment_by_order', { orderId });
    } catch (err) {
      if (err?.statusCode === 404) return null;
      throw err;
    }
  }

  before(async () => {
    for (const rel of [USER_SERVICE, PAYMENT_SERVICE, ORDER_SERVICE]) binary(rel);
    nest = await loadNest();
    redis = new RedisServer();
    await redis.start();
    const redisEnv = { REDIS_HOST: '127.0.0.1', REDIS_PORT: String(redis.port) };
    inv = await startNestInventory();
    daemons.user = await startDaemon(dirs, 'user', USER_SERVICE, 'USER_SERVICE_PORT');
    daemons.payment = await startDaemon(dirs, 'payment', PAYMENT_SERVICE,
      'PAYMENT_SERVICE_PORT', redisEnv);
    daemons.order = await startDaemon(dirs, 'order', ORDER_SERVICE, 'ORDER_SERVICE_PORT', {
      ...redisEnv,
      USER_SERVICE_HOST: '127.0.0.1', USER_SERVICE_PORT: String(daemons.user.port),
      PAYMENT_SERVICE_HOST: '127.0.0.1', PAYMENT_SERVICE_PORT: String(daemons.payment.port),
      INVENTORY_SERVICE_HOST: '127.0.0.1', INVENTORY_SERVICE_PORT: String(inv.port),
      ORDER_SAGA_RETRY_MAX_MS: '500',
    });
    orders = await nestClient(daemons.order.port);
    payments = await nestClient(daemons.payment.port);
    catalogue = await nestClient(inv.port);
    const users = await nestClient(daemons.user.port);
    try {
      userId = (await send(users, 'create_user',
        { email: `${unique('nestinv')}@example.com`, name: 'Zoé 😀' })).id;
    } finally {
      await users.close();
    }
  });

  after(() => cleanUp([
    ...[orders, payments, catalogue].map((c) => async () => { if (c) await c.close(); }),
    ...['order', 'payment', 'user'].map((n) => async () => {
      if (daemons[n]) await daemons[n].stop();
    }),
    async () => { if (inv) await inv.close(); },
    async () => { if (redis) await redis.stop(); },
    () => dirs.forEach(removeDir),
  ]));

  // Two products in the NestJS catalogue, created through a NestJS client.
  async function seed(stockA = 10, stockB = 5) {
    const a = unique('pa');
    const b = unique('pb');
    await send(catalogue, 'create_product', { id: a, name: 'A', price: 1999, stock: stockA });
    await send(catalogue, 'create_product', { id: b, name: 'B', price: 500, stock: stockB });
    return [a, b];
  }

  const sagaOf = (id) => send(orders, 'get_order_saga', { id });

  test('confirmed, priced by the NestJS catalogue; commit answered "no handler"',
    { timeout: TEST_TIMEOUT_MS }, async () => {
      const [a, b] = await seed();
      const order = await send(orders, 'create_order', { userId, paymentMethod: 'tok_visa',
        items: [{ productId: a, quantity: 2 }, { productId: b, quantity: 1 }] });
      assert.equal(order.status, 'confirmed', JSON.stringify(order));
      assert.match(order.id, ORDER_ID);
      assert.deepEqual(order.items, [{ productId: a, quantity: 2, price: 1999 },
        { productId: b, quantity: 1, price: 500 }]);
      assert.equal(order.totalAmount, 2 * 1999 + 500);
      assert.equal(order.currency, 'USD');
      assert.equal(typeof order.paymentId, 'string');

      const pay = await paymentOf(order.id);
      assert.equal(pay?.status, 'succeeded', JSON.stringify(pay));
      assert.equal(pay.amount, 4498);
      // A NestJS reservation is the sale: the stock stays taken.
      assert.deepEqual([await stock(a), await stock(b)], [8, 4]);
      assert.equal(inv.service.reservations.get(order.id)?.status, 'reserved');

      const saga = await sagaOf(order.id);
      assert.equal(saga.state, 'done', JSON.stringify(saga));
      const states = saga.history.map((h) => h.state);
      assert.ok(states.indexOf('committing') >= 0 &&
        states.indexOf('committing') < states.indexOf('done'), JSON.stringify(saga));
      assert.ok(!states.some((s) => s.startsWith('compensating')), JSON.stringify(saga));

      // The client may send the catalogue's own prices.
      const priced = await send(orders, 'create_order', { userId, paymentMethod: 'tok_visa',
        items: [{ productId: b, quantity: 1, price: 500 }] });
      assert.equal(priced.status, 'confirmed', JSON.stringify(priced));
      assert.equal(priced.totalAmount, 500);
      assert.equal(await stock(b), 3);
    });

  test('out of stock: the error, the order cancelled, nothing charged or held',
    { timeout: TEST_TIMEOUT_MS }, async () => {
      const [a, b] = await seed(10, 1);
      const err = await sendError(orders, 'create_order', { userId, paymentMethod: 'tok_visa',
        items: [{ productId: a, quantity: 1 }, { productId: b, quantity: 2 }] });
      // The tutorial's error object has no code: the saga passes on the
      // status and message under its own RESERVATION_REFUSED.
      assert.equal(err.statusCode, 409, JSON.stringify(err));
      assert.equal(err.code, 'RESERVATION_REFUSED', JSON.stringify(err));
      assert.ok(String(err.message).startsWith(`Insufficient stock for product: ${b}`),
        JSON.stringify(err));
      const orderId = ORDER_ID.exec(String(err.message))?.[0];
      assert.ok(orderId, `no order id in ${JSON.stringify(err)}`);

      const order = await send(orders, 'get_order', { id: orderId });
      assert.equal(order.status, 'cancelled', JSON.stringify(order));
      assert.equal(order.cancelReason, `Insufficient stock for product: ${b}`);
      assert.equal(order.paymentId, null);
      assert.equal(await paymentOf(orderId), null, 'nothing charged');
      assert.deepEqual([await stock(a), await stock(b)], [10, 1], 'all or nothing');
      assert.equal((await sagaOf(orderId)).state, 'cancelled');
    });

  test('a client price that differs: 409 PRICE_CHANGED, the NestJS stock released',
    { timeout: TEST_TIMEOUT_MS }, async () => {
      const [a] = await seed();
      const err = await sendError(orders, 'create_order', { userId, paymentMethod: 'tok_visa',
        items: [{ productId: a, quantity: 3, price: 1000 }] });
      assert.equal(err.statusCode, 409, JSON.stringify(err));
      assert.equal(err.code, 'PRICE_CHANGED');
      assert.deepEqual(err.details.map((d) => [d.productId, d.requested, d.price]),
        [[a, 1000, 1999]], JSON.stringify(err));
      const orderId = ORDER_ID.exec(String(err.message))?.[0];
      assert.ok(orderId, `no order id in ${JSON.stringify(err)}`);
      assert.equal((await send(orders, 'get_order', { id: orderId })).cancelReason,
        'price_changed');
      assert.equal(await paymentOf(orderId), null, 'nothing charged');
      assert.equal(await stock(a), 10);
      assert.equal(inv.service.reservations.get(orderId)?.status, 'released');
    });

  test('tok_chargeDeclined: cancelled card_declined, the NestJS stock released',
    { timeout: TEST_TIMEOUT_MS }, async () => {
      const [a, b] = await seed();
      const order = await send(orders, 'create_order', { userId,
        paymentMethod: 'tok_chargeDeclined',
        items: [{ productId: a, quantity: 4 }, { productId: b, quantity: 5 }] });
      assert.equal(order.status, 'cancelled', JSON.stringify(order));
      assert.equal(order.cancelReason, 'card_declined');
      assert.equal(order.totalAmount, 4 * 1999 + 5 * 500, 'priced before the charge');
      assert.deepEqual([await stock(a), await stock(b)], [10, 5]);
      assert.equal(inv.service.reservations.get(order.id)?.status, 'released');
      const pay = await paymentOf(order.id);
      assert.notEqual(pay?.status, 'succeeded', JSON.stringify(pay));

      const saga = await sagaOf(order.id);
      assert.equal(saga.state, 'cancelled', JSON.stringify(saga));
      assert.ok(saga.history.some((h) => h.state === 'compensating_release'),
        JSON.stringify(saga));
    });
});
