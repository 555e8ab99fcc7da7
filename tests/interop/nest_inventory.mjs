// nest_inventory.mjs: an inventory microservice written the way the NestJS
// tutorial writes its services (/work/shared/nestjs-tutorial/src/*.ts): TCP
// transport, @MessagePattern({cmd}) handlers over an in-memory Map, failures
// answered as `{error, statusCode}` objects rather than thrown. It serves only
// what PROTOCOL.md section 6 names for inventory (reserve_inventory,
// release_inventory, get_product, create_product, health): no
// commit_inventory, so a caller gets NestJS's "no matching message handler"
// reply for it, which our order saga takes as committed (a reservation here
// is a sale). Not a test file: test_nest_inventory.mjs starts it in-process
// with startNestInventory(); `node nest_inventory.mjs` runs it alone on
// INVENTORY_SERVICE_PORT (default 4005), as the tutorial's bootstrap() does.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { loadNest } from './lib.mjs';

// Apply a (legacy TypeScript-style) method decorator in plain JavaScript.
function decorateMethod(cls, key, decorator) {
  const desc = Object.getOwnPropertyDescriptor(cls.prototype, key);
  const result = decorator(cls.prototype, key, desc);
  Object.defineProperty(cls.prototype, key, result || desc);
}

const isPositiveInt = (n) => Number.isSafeInteger(n) && n > 0;
const isMoney = (n) => Number.isSafeInteger(n) && n >= 0; // integer minor units

// One entry per product, quantities summed, in product-id order: the
// reservation's identity, so a retry with the items reordered is the same.
function normalise(items) {
  const byProduct = new Map();
  for (const { productId, quantity } of items) {
    byProduct.set(productId, (byProduct.get(productId) ?? 0) + quantity);
  }
  return [...byProduct.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

// The service: plain JavaScript over two Maps, so the tests can also read it.
export class InventoryService {
  constructor(logger) {
    this.logger = logger;
    this.products = new Map();     // id -> product; stock is what may still be sold
    this.reservations = new Map(); // orderId -> {orderId, status, key, result}
    this.seq = 0;
  }

  create(dto) {
    const { id, name, price, stock = 0 } = dto ?? {};
    if (typeof name !== 'string' || !name.trim() || !isMoney(price) || !isMoney(stock) ||
      (id !== undefined && (typeof id !== 'string' || !id))) {
      return { error: 'name, an integer price (minor units) and stock >= 0 are required',
        statusCode: 400 };
    }
    const productId = id ?? this.generateId();
    if (this.products.has(productId)) {
      return { error: `Product already exists: ${productId}`, statusCode: 409 };
    }
    const now = new Date();
    const product = { id: productId, name: name.trim(), price, stock, createdAt: now,
      updatedAt: now };
    this.products.set(productId, product);
    this.logger.log(`Created product: ${productId}`);
    return product;
  }

  findOne(id) {
    return this.products.get(id) ?? null;
  }

  // All or nothing: every item is checked before any stock moves. The first
  // result is kept under the order id and returned to a retry.
  reserve(dto) {
    const { orderId, items } = dto ?? {};
    if (typeof orderId !== 'string' || !orderId || !Array.isArray(items) || !items.length ||
      !items.every((it) => typeof it?.productId === 'string' && isPositiveInt(it.quantity))) {
      return { error: 'orderId and items [{productId, quantity > 0}] are required',
        statusCode: 400 };
    }
    const wanted = normalise(items);
    const key = JSON.stringify(wanted);
    const prior = this.reservations.get(orderId);
    if (prior?.status === 'released') {
      // Released (maybe before this reserve arrived): holding stock now
      // would leak it, since nobody will release it again.
      return { error: `Reservation already released for order: ${orderId}`, statusCode: 409 };
    }
    if (prior) {
      if (prior.key !== key) {
        return { error: `Reservation for order ${orderId} has other items`, statusCode: 409 };
      }
      return prior.result;
    }
    const missing = wanted.filter(([pid]) => !this.products.has(pid)).map(([pid]) => pid);
    if (missing.length) {
      return { error: `Product not found: ${missing.join(', ')}`, statusCode: 404 };
    }
    const short = wanted.filter(([pid, q]) => this.products.get(pid).stock < q)
      .map(([pid]) => pid);
    if (short.length) {
      return { error: `Insufficient stock for product: ${short.join(', ')}`, statusCode: 409 };
    }
    const now = new Date();
    for (const [pid, q] of wanted) {
      const p = this.products.get(pid);
      p.stock -= q;
      p.updatedAt = now;
    }
    const result = {
      orderId,
      items: wanted.map(([productId, quantity]) =>
        ({ productId, quantity, price: this.products.get(productId).price })),
    };
    this.reservations.set(orderId, { orderId, status: 'reserved', key, result });
    this.logger.log(`Reserved inventory for order: ${orderId}`);
    return result;
  }

  // Idempotent; an unknown order is recorded as released so that a reserve
  // arriving after its compensation is refused.
  release(dto) {
    const { orderId } = dto ?? {};
    if (typeof orderId !== 'string' || !orderId) {
      return { error: 'orderId is required', statusCode: 400 };
    }
    const r = this.reservations.get(orderId);
    if (!r) {
      this.reservations.set(orderId, { orderId, status: 'released', key: null, result: null });
    } else if (r.status === 'reserved') {
      const now = new Date();
      for (const { productId, quantity } of r.result.items) {
        const p = this.products.get(productId);
        p.stock += quantity;
        p.updatedAt = now;
      }
      r.status = 'released';
      this.logger.log(`Released inventory for order: ${orderId}`);
    }
    return { orderId, status: 'released' };
  }

  generateId() {
    return `product_${Date.now()}_${++this.seq}`;
  }
}

// Builds the NestJS controller and module around one InventoryService.
function inventoryModule(nest, service) {
  const { common, microservices } = nest;
  const { MessagePattern } = microservices;

  class InventoryController {
    createProduct(data) {
      return service.create(data);
    }
    getProduct(data) {
      const product = service.findOne(data?.id);
      if (!product) {
        return { error: 'Product not found', statusCode: 404 };
      }
      return product;
    }
    reserveInventory(data) {
      return service.reserve(data);
    }
    releaseInventory(data) {
      return service.release(data);
    }
    health() {
      return { status: 'ok', service: 'inventory' };
    }
  }
  decorateMethod(InventoryController, 'createProduct', MessagePattern({ cmd: 'create_product' }));
  decorateMethod(InventoryController, 'getProduct', MessagePattern({ cmd: 'get_product' }));
  decorateMethod(InventoryController, 'reserveInventory',
    MessagePattern({ cmd: 'reserve_inventory' }));
  decorateMethod(InventoryController, 'releaseInventory',
    MessagePattern({ cmd: 'release_inventory' }));
  decorateMethod(InventoryController, 'health', MessagePattern({ cmd: 'health' }));
  common.Controller()(InventoryController);

  class InventoryModule {}
  common.Module({ controllers: [InventoryController] })(InventoryModule);
  return InventoryModule;
}

// Start the microservice; resolves {app, port, service, close()}. port 0
// picks an ephemeral one. logger: false (tests) or a NestJS logger option.
export async function startNestInventory({ host = '127.0.0.1', port = 0, logger = false } = {}) {
  const nest = await loadNest();
  const service = new InventoryService(new nest.common.Logger('InventoryService'));
  const app = await nest.core.NestFactory.createMicroservice(inventoryModule(nest, service), {
    transport: nest.microservices.Transport.TCP,
    options: { host, port },
    logger,
  });
  await app.listen();
  return { app, service, port: app.unwrap().address().port, close: () => app.close() };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const port = parseInt(process.env.INVENTORY_SERVICE_PORT, 10) || 4005;
  const inv = await startNestInventory({
    host: process.env.INVENTORY_SERVICE_HOST || '127.0.0.1', port, logger: undefined,
  });
  console.log(`Inventory Service is listening on port ${inv.port}`);
  const stop = () => inv.close().then(() => process.exit(0));
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
