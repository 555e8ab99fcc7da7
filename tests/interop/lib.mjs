// lib.mjs: shared helpers for the NestJS interop tests (not a test file).
// Locates our binaries through NESTC_BUILD_DIR, starts a daemon on an
// ephemeral port and waits (with a deadline) for its "listening" line, stops
// it by pid with SIGTERM and checks its exit, runs proto-call, and loads
// NestJS with a clear message when node_modules is missing, and runs a
// redis-server on a free port (RedisServer).
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const START_TIMEOUT_MS = 20000;
export const STOP_TIMEOUT_MS = 15000;
export const CALL_TIMEOUT_MS = 10000;
export const NO_HANDLER_MESSAGE =
  'There is no matching message handler defined in the remote service.';
const SANITIZER_MARKERS = ['ERROR: AddressSanitizer', 'ERROR: LeakSanitizer', 'runtime error:'];

export function buildDir() {
  const d = process.env.NESTC_BUILD_DIR;
  if (!d) {
    throw new Error('NESTC_BUILD_DIR is not set: run through ctest, or export ' +
      'NESTC_BUILD_DIR=<your build dir>');
  }
  return d;
}

// Absolute path of a built executable, or a clear error.
export function binary(rel) {
  const p = path.join(buildDir(), rel);
  try {
    accessSync(p, constants.X_OK);
  } catch {
    throw new Error(`missing executable ${p} (NESTC_BUILD_DIR=${buildDir()}): build it ` +
      'first with `cmake --build <build dir>`');
  }
  return p;
}

export const USER_SERVICE = 'services/user/user-service';
export const PROTO_CALL = 'tools/proto-call/proto-call';

// The NestJS modules, or an error saying how to install them.
export async function loadNest() {
  if (!existsSync(path.join(HERE, 'node_modules', '@nestjs', 'microservices'))) {
    throw new Error(`NestJS is not installed in ${HERE}: run \`npm ci\` there ` +
      '(package-lock.json pins @nestjs/microservices 12.1.1)');
  }
  await import('reflect-metadata');
  const [common, core, microservices, rxjs] = await Promise.all([
    import('@nestjs/common'), import('@nestjs/core'), import('@nestjs/microservices'),
    import('rxjs'),
  ]);
  return { common, core, microservices, rxjs };
}

export function tempDir(prefix = 'nestc-interop-') {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

export function removeDir(d) {
  if (d) rmSync(d, { recursive: true, force: true });
}

// Poll predicate (sync or async) until it returns a truthy value, within
// timeoutMs; throws naming what was awaited.
export async function waitUntil(predicate, timeoutMs = CALL_TIMEOUT_MS, what = 'condition',
  intervalMs = 20) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await predicate();
    if (last) return last;
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} ` +
        `(last: ${JSON.stringify(last)})`);
    }
    await new Promise((r) => setTimeout(r, intervalMs)); // polling interval
  }
}

// Children still running, killed by pid if this process exits without
// stopping them (an interrupted run).
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try { process.kill(child.pid, 'SIGKILL'); } catch { /* already gone */ }
  }
});

// A child daemon whose output is kept whole for failure messages.
export class Daemon {
  constructor(name, argv, env) {
    this.name = name;
    this.argv = argv;
    this.env = env;
    this.out = [];
    this.ports = {};
    this.exit = null;
  }

  output() {
    return this.out.join('');
  }

  describe() {
    return `--- ${this.name} (${this.argv.join(' ')}) exit=${JSON.stringify(this.exit)} ` +
      `output: ---\n${this.output()}\n--- end of ${this.name} output ---`;
  }

  // Resolve once every name in listenNames was announced; reject with the
  // output if the child exits first or the deadline passes.
  start(listenNames = ['rpc'], timeoutMs = START_TIMEOUT_MS) {
    const env = { ASAN_OPTIONS: 'detect_leaks=1', ...process.env, ...this.env };
    this.child = spawn(this.argv[0], this.argv.slice(1), {
      env, stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(this.child);
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        live.delete(this.child);
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    return new Promise((resolve, reject) => {
      let pending = '';
      let settled = false;
      const finish = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(this);
      };
      const timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        finish(new Error(`${this.name} did not announce ${listenNames} within ` +
          `${timeoutMs} ms\n${this.describe()}`));
      }, timeoutMs);
      this.child.stdout.on('data', (chunk) => {
        const text = chunk.toString('utf8');
        this.out.push(text);
        pending += text;
        let i;
        while ((i = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, i);
          pending = pending.slice(i + 1);
          let obj;
          try { obj = JSON.parse(line); } catch { continue; }
          if (obj && obj.event === 'listening' && Number.isInteger(obj.port)) {
            this.ports[obj.name] = obj.port;
          }
        }
        if (listenNames.every((n) => n in this.ports)) finish();
      });
      this.child.stderr.on('data', (chunk) => this.out.push(chunk.toString('utf8')));
      this.child.on('error', (e) => finish(new Error(`${this.name}: ${e.message}`)));
      this.exited.then(() => finish(new Error(
        `${this.name} exited before announcing ${listenNames}\n${this.describe()}`)));
    });
  }

  get port() {
    return this.ports.rpc ?? this.ports.http;
  }

  // JSON log lines printed so far.
  logLines() {
    return this.output().split('\n').flatMap((l) => {
      try { const o = JSON.parse(l); return o && typeof o === 'object' ? [o] : []; } catch {
        return [];
      }
    });
  }

  // SIGTERM by pid; throws on a hang, a non-zero or signalled exit, or a
  // sanitizer report.
  async stop(timeoutMs = STOP_TIMEOUT_MS) {
    if (!this.child) return;
    const wasRunning = this.exit === null;
    if (wasRunning) process.kill(this.child.pid, 'SIGTERM');
    let timer;
    const timedOut = new Promise((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    const r = await Promise.race([this.exited, timedOut]);
    clearTimeout(timer);
    if (r === 'timeout') {
      process.kill(this.child.pid, 'SIGKILL');
      await this.exited;
      throw new Error(`${this.name} did not exit within ${timeoutMs} ms of SIGTERM\n` +
        this.describe());
    }
    const problems = [];
    if (!wasRunning) problems.push('it had already exited before SIGTERM');
    if (this.exit.code !== 0) {
      problems.push(this.exit.signal ? `killed by ${this.exit.signal}`
        : `exit status ${this.exit.code}`);
    }
    const marker = SANITIZER_MARKERS.find((m) => this.output().includes(m));
    if (marker) problems.push(`sanitizer report (${marker})`);
    if (problems.length) {
      throw new Error(`${this.name} did not stop cleanly: ${problems.join('; ')}\n` +
        this.describe());
    }
  }
}

// Run proto-call with args; resolves {code, signal, stdout, stderr} (never
// rejects on a non-zero exit). Killed after timeoutMs.
export function runProtoCall(args, timeoutMs = CALL_TIMEOUT_MS) {
  const bin = binary(PROTO_CALL);
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, {
      env: { ASAN_OPTIONS: 'detect_leaks=1', ...process.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = [];
    const err = [];
    child.stdout.on('data', (c) => out.push(c));
    child.stderr.on('data', (c) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const res = {
        code, signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
      const marker = SANITIZER_MARKERS.find((m) => res.stderr.includes(m));
      if (marker) {
        reject(new Error(`proto-call ${args.join(' ')}: sanitizer report\n${res.stderr}`));
        return;
      }
      resolve(res);
    });
  });
}

// A description of a proto-call result for assertion messages.
export function showRun(r) {
  return `exit=${r.code} signal=${r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
}

// --- redis-server on a free port (for tests that need a real Redis) --------

const REDIS_START_ATTEMPTS = 3; // free-port races: try another port this many times

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// PING over a fresh connection: true on +PONG, false on anything else or
// after timeoutMs.
function redisPing(port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const done = (v) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.on('error', () => done(false));
    sock.on('connect', () => sock.write('PING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      if (buf.includes('\r\n')) done(buf === '+PONG\r\n');
    });
  });
}

// A redis-server child without persistence; start() resolves once it answers
// PING, stop() ends it by pid (SIGTERM, then SIGKILL after timeoutMs).
export class RedisServer {
  constructor() {
    this.port = null;
    this.child = null;
    this.out = [];
  }

  async start(timeoutMs = START_TIMEOUT_MS) {
    let last = '';
    for (let attempt = 0; attempt < REDIS_START_ATTEMPTS; attempt++) {
      this.port = await freePort();
      this.out = [];
      const child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1',
        '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
      this.child = child;
      live.add(child);
      child.stdout.on('data', (c) => this.out.push(c.toString('utf8')));
      child.stderr.on('data', (c) => this.out.push(c.toString('utf8')));
      let exit = null;
      let err = null;
      this.exited = new Promise((resolve) => {
        child.on('exit', (code, signal) => {
          live.delete(child);
          exit = { code, signal };
          resolve(exit);
        });
      });
      child.on('error', (e) => { err = e; });
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline && exit === null && err === null) {
        if (await redisPing(this.port)) return this;
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
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
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
