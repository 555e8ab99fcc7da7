// A real NestJS 12.1.1 ClientProxy (TCP transport) against our user service:
// the request catalogue, the user_logged_in event, NestJS's no-handler error,
// non-ASCII payloads, our error objects arriving as the rxjs error, and many
// concurrent calls on one NestJS connection.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import {
  Daemon, NO_HANDLER_MESSAGE, USER_SERVICE, binary, loadNest, removeDir, tempDir, waitUntil,
} from './lib.mjs';

const TEST_TIMEOUT_MS = 30000;
const CALL_TIMEOUT_MS = 10000;
const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

let nest;
let svc;
let client;
let dataDir;
let seq = 0;

const uniqueEmail = (p = 'nest') => `${p}${process.pid}.${++seq}@example.com`;

// One request through the NestJS client, bounded in time.
function send(pattern, data) {
  const { firstValueFrom, timeout } = nest.rxjs;
  return firstValueFrom(client.send(pattern, data).pipe(timeout(CALL_TIMEOUT_MS)));
}

function userList(page) {
  if (Array.isArray(page?.users)) return page.users;
  throw new Error(`no "users" list in get_users response ${JSON.stringify(page)}`);
}

function namesField(err, field) {
  return String(err.message).includes(field) ||
    (Array.isArray(err.details) && err.details.some((d) => d && d.field === field));
}

describe('NestJS ClientProxy against our user service', { timeout: 120000 }, () => {
  before(async () => {
    const bin = binary(USER_SERVICE); // fail clearly if not built
    nest = await loadNest();
    dataDir = tempDir();
    svc = new Daemon('user-service', [bin], {
      LISTEN_HOST: '127.0.0.1', USER_SERVICE_PORT: '0', DATA_DIR: dataDir,
    });
    await svc.start(['rpc']);
    const { ClientProxyFactory, Transport } = nest.microservices;
    client = ClientProxyFactory.create({
      transport: Transport.TCP, options: { host: '127.0.0.1', port: svc.port },
    });
    await client.connect();
  });

  after(async () => {
    try {
      if (client) await client.close();
      if (svc) await svc.stop();
    } finally {
      removeDir(dataDir);
    }
  });

  test('health', { timeout: TEST_TIMEOUT_MS }, async () => {
    const h = await send({ cmd: 'health' }, {});
    assert.equal(typeof h, 'object');
    assert.ok(['ok', 'up'].includes(h.status), JSON.stringify(h));
  });

  test('create_user, get_user, get_users', { timeout: TEST_TIMEOUT_MS }, async () => {
    const email = uniqueEmail('ada');
    const user = await send({ cmd: 'create_user' }, { email, name: 'Ada Lovelace' });
    assert.equal(typeof user.id, 'string');
    assert.equal(user.email, email);
    assert.equal(user.name, 'Ada Lovelace');
    assert.match(user.createdAt, ISO_MS);

    const got = await send({ cmd: 'get_user' }, { id: user.id });
    assert.equal(got.id, user.id);
    assert.equal(got.email, email);

    const page = await send({ cmd: 'get_users' }, { page: 1, limit: 100 });
    assert.ok(page.total >= 1, JSON.stringify(page));
    assert.equal(page.page, 1);
    assert.equal(page.limit, 100);
    assert.ok(userList(page).some((u) => u.id === user.id), JSON.stringify(page));
  });

  test('user_logged_in event sets lastLoginAt', { timeout: TEST_TIMEOUT_MS }, async () => {
    const user = await send({ cmd: 'create_user' }, { email: uniqueEmail(), name: 'Login' });
    const before = user.lastLoginAt ?? null;
    const { firstValueFrom } = nest.rxjs;
    await firstValueFrom(client.emit('user_logged_in',
      { userId: user.id, timestamp: '2026-01-01T00:00:00.000Z' }), { defaultValue: null });
    const after = await waitUntil(async () => {
      const u = await send({ cmd: 'get_user' }, { id: user.id });
      return u.lastLoginAt && u.lastLoginAt !== before ? u : null;
    }, 10000, 'lastLoginAt to change');
    assert.match(after.lastLoginAt, ISO_MS);
  });

  test('unknown pattern: NestJS no-handler error', { timeout: TEST_TIMEOUT_MS }, async () => {
    await assert.rejects(send({ cmd: 'no_such_command' }, {}), (err) => {
      assert.equal(err, NO_HANDLER_MESSAGE);
      return true;
    });
    // The connection is still usable.
    const h = await send({ cmd: 'health' }, {});
    assert.ok(h);
  });

  test('non-ASCII payload round trip', { timeout: TEST_TIMEOUT_MS }, async () => {
    const name = 'Zoé 😀 Ünïcödé 漢字';
    const user = await send({ cmd: 'create_user' }, { email: uniqueEmail('utf'), name });
    assert.equal(user.name, name);
    const got = await send({ cmd: 'get_user' }, { id: user.id });
    assert.equal(got.name, name);
    // A missing id with non-ASCII text: the error comes back, the stream stays in sync.
    await assert.rejects(send({ cmd: 'get_user' }, { id: 'é😀' }), (err) => {
      assert.ok([400, 404].includes(err.statusCode), JSON.stringify(err));
      return true;
    });
    assert.ok(await send({ cmd: 'health' }, {}));
  });

  test('validation error arrives as the rxjs error', { timeout: TEST_TIMEOUT_MS }, async () => {
    await assert.rejects(send({ cmd: 'create_user' }, { email: 'not-an-email', name: 'X' }),
      (err) => {
        assert.equal(err.statusCode, 400, JSON.stringify(err));
        assert.equal(typeof err.message, 'string');
        assert.ok(namesField(err, 'email'), JSON.stringify(err));
        return true;
      });
    const email = uniqueEmail('dup');
    await send({ cmd: 'create_user' }, { email, name: 'First' });
    await assert.rejects(send({ cmd: 'create_user' }, { email: email.toUpperCase(), name: 'B' }),
      (err) => {
        assert.equal(err.statusCode, 409, JSON.stringify(err));
        return true;
      });
    await assert.rejects(send({ cmd: 'get_user' }, { id: 'does-not-exist' }), (err) => {
      assert.equal(err.statusCode, 404, JSON.stringify(err));
      assert.equal(err.code, 'USER_NOT_FOUND');
      return true;
    });
  });

  test('many concurrent calls on one NestJS connection', { timeout: TEST_TIMEOUT_MS },
    async () => {
      const n = 50;
      const users = await Promise.all(Array.from({ length: n }, (_, i) =>
        send({ cmd: 'create_user' }, { email: uniqueEmail('conc'), name: `C${i} é😀` })));
      assert.equal(new Set(users.map((u) => u.id)).size, n);
      const got = await Promise.all(users.map((u) => send({ cmd: 'get_user' }, { id: u.id })));
      got.forEach((u, i) => assert.equal(u.name, `C${i} é😀`));
    });
});
