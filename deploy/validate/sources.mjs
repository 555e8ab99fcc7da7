// sources.mjs: what each daemon reads from its environment, found in the C
// sources (gateway/, services/*/, lib*/), for consistency.mjs.
//   import { scanSources } from "./sources.mjs";
//   const { daemons, portDefault, defines, errors } = scanSources(REPO);
// daemons: "gateway" / "<name>-service" -> { dir, app, portVar, vars (Set),
// redis, store, upstreams: [{ portVar, hostVar }] }; portDefault: *_PORT -> its
// default; errors: what the scan could not make sense of.
//
// The model (why a variable belongs to a daemon):
//  - a literal name in proto_config_*("X", ...), getenv("X") or a wrapper
//    *_env("X", ...) in a function of the daemon's own directory, or in a
//    library function it calls, directly or not (LOG_LEVEL from
//    proto_log_init(), say);
//  - a service on libsvc (a svc_def_t table passed to svc_main()) reads, as
//    libsvc/src/daemon.c's svc_main() does: every variable svc_main() reaches
//    unconditionally (LISTEN_HOST, LOG_LEVEL, RPC_MAX_FRAME_BYTES, ...), its
//    .port_env, and under read_config()'s conditions (SVC_CONDITIONAL below):
//    DATA_DIR and SQLITE_SYNCHRONOUS with a store, REDIS_* with SVC_REDIS,
//    RPC_TIMEOUT_MS and <ENV>_SERVICE_HOST/PORT per entry of .upstreams. The
//    conditions are checked against read_config() itself, so a change there
//    fails the scan instead of going unnoticed;
//  - the gateway's upstream table {"user", "USER_SERVICE_HOST", "USER_SERVICE_PORT", 3001}.
// A service's own settings (NOTIFY_*, INVENTORY_*) are therefore its own.
import { readFileSync, readdirSync, existsSync, statSync } from "node:fs";
import { join, relative } from "node:path";

// read_config()'s conditional reads: what is read under each condition, and
// the guard that must be in the if() controlling it. A guard's capture names
// the svc_def_t field or flag it tests ("def->store && ..." -> .store).
const SVC_CONDITIONAL = [
  { key: "store", guard: /\bdef->(\w+)\s*&&/, names: ["DATA_DIR"], fns: ["store_sync_from_env"] },
  { key: "upstreams", guard: /\bdef->(n_upstreams)\b/, names: ["RPC_TIMEOUT_MS"], fns: [] },
  { key: "redis", guard: /\bdef->flags\s*&\s*(SVC_REDIS)\b/, names: [], fns: ["proto_redis_opts_from_env"] },
];
const SVC_MAIN = "svc_main";
const SVC_READ_CONFIG = "read_config";
const SVC_DAEMON_C = join("libsvc", "src", "daemon.c");
const SVC_DAEMON_H = join("libsvc", "include", "svc", "daemon.h");

const NAME = '"([A-Z][A-Z0-9_]*)"';
const READ_RES = [new RegExp(`\\bproto_config_\\w+\\(\\s*${NAME}`, "g"),
  new RegExp(`\\bgetenv\\(\\s*${NAME}`, "g"), new RegExp(`\\b\\w+_env\\(\\s*${NAME}`, "g")];
const PORT_RE = new RegExp(`\\bproto_config_(?:peer_)?port\\(\\s*${NAME}\\s*,\\s*(\\w+)`, "g");
const GW_UPSTREAM_RE = new RegExp(`\\{\\s*"[a-z]+"\\s*,\\s*${NAME}\\s*,\\s*${NAME}\\s*,\\s*(\\w+)\\s*\\}`, "g");
const NOT_CALLS = new Set(["if", "for", "while", "switch", "return", "sizeof", "defined",
  "_Static_assert", "_Alignof", "offsetof"]);

function cFiles(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...cFiles(p));
    else if (/\.[ch]$/.test(e)) out.push(p);
  }
  return out;
}

// Comments become spaces; then a copy with string and character literals and
// preprocessor lines blanked too, of the same length, so that braces can be
// counted in it and positions still point into the text with the strings.
const blank = (s) => s.replace(/[^\n]/g, " ");
function lex(src) {
  const text = src.replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'/g,
    (m) => (m[0] === "/" ? blank(m) : m));
  const code = text
    .replace(/"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'/g, (m) => m[0] + blank(m.slice(1, -1)) + m[0])
    .replace(/^[ \t]*#(?:[^\n]*\\\n)*[^\n]*/gm, blank);
  return { text, code };
}

// The top-level function definitions of one file: name, body span, static.
function functionsOf(code) {
  const fns = [];
  let depth = 0, segStart = 0, open = -1;
  for (let i = 0; i < code.length; i++) {
    const ch = code[i];
    if (ch === "{") {
      if (depth++ === 0) open = i;
    } else if (ch === "}") {
      if (--depth === 0) {
        const header = code.slice(segStart, open);
        const m = /\b([A-Za-z_]\w*)\s*\(([^()]|\([^()]*\))*\)\s*$/.exec(header);
        if (m && !header.includes("=") && !NOT_CALLS.has(m[1])) {
          fns.push({ name: m[1], start: open, end: i + 1, isStatic: /\bstatic\b/.test(header) });
        }
        segStart = i + 1;
      }
    } else if (ch === ";" && depth === 0) {
      segStart = i + 1;
    }
  }
  return fns;
}

const readsIn = (text) => {
  const vars = new Set();
  for (const re of READ_RES) for (const m of text.matchAll(re)) vars.add(m[1]);
  return vars;
};
const callsIn = (code) => {
  const calls = new Set();
  for (const m of code.matchAll(/\b([A-Za-z_]\w*)\s*\(/g)) if (!NOT_CALLS.has(m[1])) calls.add(m[1]);
  return calls;
};

// The spans of the if() statements of a body that contain or control pos.
function guardsAt(code, text, pos) {
  const conds = [];
  for (const m of code.matchAll(/\bif\s*\(/g)) {
    let i = m.index + m[0].length, depth = 1;
    for (; i < code.length && depth; i++) depth += code[i] === "(" ? 1 : code[i] === ")" ? -1 : 0;
    const condEnd = i;
    while (/\s/.test(code[i])) i++;
    let end;
    if (code[i] === "{") {
      let d = 0;
      for (end = i; end < code.length; end++) {
        if (code[end] === "{") d++;
        else if (code[end] === "}" && --d === 0) break;
      }
    } else {
      end = code.indexOf(";", i);
    }
    if (pos > m.index && pos < end) conds.push(text.slice(m.index, condEnd));
  }
  return conds;
}

// #define NAME 123 / 0x1u / (123u): every numeric macro, by name.
function numericDefines(text, defines) {
  for (const m of text.matchAll(/^[ \t]*#define\s+([A-Z][A-Z0-9_]*)\s+\(?(0x[0-9a-fA-F]+|\d+)[uUlL]*\)?[ \t]*$/gm)) {
    if (!defines.has(m[1])) defines.set(m[1], new Set());
    defines.get(m[1]).add(Number(m[2]));
  }
}

export function scanSources(REPO) {
  const errors = [];
  const fail = (msg) => errors.push(`sources: ${msg}`);

  const serviceNames = readdirSync(join(REPO, "services")).filter((n) =>
    existsSync(join(REPO, "services", n, "main.c")));
  const daemonDirs = new Map([["gateway", "gateway"]]);
  for (const n of serviceNames) daemonDirs.set(`${n}-service`, join("services", n));
  const libDirs = readdirSync(REPO).filter((n) => /^lib/.test(n) && statSync(join(REPO, n)).isDirectory());

  // every file: its text, its functions
  const files = [];
  const defineSets = new Map();
  for (const d of [...daemonDirs.values(), ...libDirs]) {
    for (const p of cFiles(join(REPO, d))) {
      const rel = relative(REPO, p);
      const { text, code } = lex(readFileSync(p, "utf8"));
      numericDefines(text, defineSets);
      const fns = functionsOf(code).map((f) => ({
        ...f, file: rel, reads: readsIn(text.slice(f.start, f.end)), calls: callsIn(code.slice(f.start, f.end)),
      }));
      files.push({ rel, text, code, fns, lib: libDirs.some((l) => rel.startsWith(l + "/")) });
    }
  }
  const defines = new Map();
  for (const [k, set] of defineSets) {
    if (set.size > 1) fail(`#define ${k} has different values: ${[...set].join(", ")}`);
    defines.set(k, [...set][0]);
  }
  const resolve = (tok, what) => {
    const v = /^\d+$/.test(tok) ? Number(tok) : defines.get(tok);
    if (v === undefined) fail(`cannot resolve ${tok} (${what})`);
    return v;
  };

  // library functions: the non-static ones by name; static ones by file
  const libFns = new Map();
  for (const f of files.filter((x) => x.lib)) {
    for (const fn of f.fns) if (!fn.isStatic) libFns.set(fn.name, [...(libFns.get(fn.name) ?? []), fn]);
  }
  const callee = (from, name) => {
    const local = files.find((f) => f.rel === from.file).fns.filter((fn) => fn.name === name);
    return local.length ? local : libFns.get(name) ?? [];
  };
  // what a set of functions reads, following calls (not into `stop`)
  const closure = (roots, stop = new Set()) => {
    const vars = new Set(), seen = new Set(), todo = [...roots];
    while (todo.length) {
      const fn = todo.pop();
      if (seen.has(fn) || stop.has(fn.name)) continue;
      seen.add(fn);
      for (const v of fn.reads) vars.add(v);
      for (const c of fn.calls) todo.push(...callee(fn, c));
    }
    return vars;
  };

  // ---- port defaults: literal proto_config_port / _peer_port calls, tables
  const portDefaults = new Map();
  const addPortDefault = (v, d, where) => {
    if (d === undefined) return;
    if (!portDefaults.has(v)) portDefaults.set(v, new Map());
    portDefaults.get(v).set(d, where);
  };
  for (const f of files) {
    for (const m of f.text.matchAll(PORT_RE)) addPortDefault(m[1], resolve(m[2], `the default of ${m[1]}`), f.rel);
  }

  // ---- libsvc: what svc_main() reads for a svc_def_t
  const svcFile = files.find((f) => f.rel === SVC_DAEMON_C);
  const svcMain = svcFile?.fns.find((fn) => fn.name === SVC_MAIN);
  const readConfig = svcFile?.fns.find((fn) => fn.name === SVC_READ_CONFIG);
  let svcAlways = new Set(), svcUpstreamSuffixes = [];
  const svcGuard = {}; // SVC_CONDITIONAL key -> the field or flag its guard tests
  if (!svcMain || !readConfig) {
    fail(`no ${SVC_MAIN}() / ${SVC_READ_CONFIG}() in ${SVC_DAEMON_C}: is the scanner broken?`);
  } else {
    const body = svcFile.text.slice(readConfig.start, readConfig.end);
    const code = svcFile.code.slice(readConfig.start, readConfig.end);
    for (const c of SVC_CONDITIONAL) {
      for (const [what, re] of [...c.names.map((n) => [n, new RegExp(`"${n}"`)]),
        ...c.fns.map((n) => [`${n}()`, new RegExp(`\\b${n}\\s*\\(`)])]) {
        const m = re.exec(body);
        const g = m && guardsAt(code, body, m.index).map((t) => c.guard.exec(t)?.[1]).find(Boolean);
        if (!m) fail(`${SVC_DAEMON_C} ${SVC_READ_CONFIG}() no longer reads ${what}: update SVC_CONDITIONAL in sources.mjs`);
        else if (!g) fail(`${SVC_DAEMON_C} ${SVC_READ_CONFIG}() reads ${what} outside an if() like ${c.guard}: update SVC_CONDITIONAL in sources.mjs`);
        else if (svcGuard[c.key] && svcGuard[c.key] !== g) fail(`${SVC_DAEMON_C} ${SVC_READ_CONFIG}(): ${c.key} settings under both ${svcGuard[c.key]} and ${g}`);
        else svcGuard[c.key] = g;
      }
    }
    // snprintf(name, ..., "%s_SERVICE_HOST", u->env): per upstream
    svcUpstreamSuffixes = [...body.matchAll(/"%s(_[A-Z0-9_]+)"/g)].map((m) => m[1]);
    if (!svcUpstreamSuffixes.includes("_SERVICE_PORT")) fail(`${SVC_DAEMON_C} ${SVC_READ_CONFIG}(): no "%s_SERVICE_PORT" upstream setting found`);
    const condNames = new Set(SVC_CONDITIONAL.flatMap((c) => c.names));
    svcAlways = closure([svcMain], new Set(SVC_CONDITIONAL.flatMap((c) => c.fns)));
    for (const n of condNames) svcAlways.delete(n);
  }
  const svcCond = new Map(SVC_CONDITIONAL.map((c) => {
    const vars = new Set(c.names);
    for (const fnName of c.fns) for (const v of closure(libFns.get(fnName) ?? [])) vars.add(v);
    return [c.key, vars];
  }));

  // svc_def_t's fields: a table naming another is read wrongly here (a
  // service not yet moved to a change of libsvc, say)
  const svcFields = structFields(files.find((f) => f.rel === SVC_DAEMON_H)?.code ?? "", "svc_def");
  if (!svcFields.has("port_env")) fail(`no struct svc_def with .port_env in ${SVC_DAEMON_H}: is the scanner broken?`);

  // ---- each daemon
  const daemons = new Map();
  for (const [name, dir] of daemonDirs) {
    const own = files.filter((f) => f.rel.startsWith(dir + "/"));
    const d = {
      dir, app: name.replace(/-service$/, ""), portVar: name === "gateway" ? "GATEWAY_PORT" : undefined,
      vars: closure(own.flatMap((f) => f.fns), new Set([SVC_MAIN])), upstreams: [], store: false, redis: false,
    };
    for (const f of own) {
      // the gateway's table: {"user", "USER_SERVICE_HOST", "USER_SERVICE_PORT", 3001}
      for (const m of f.text.matchAll(GW_UPSTREAM_RE)) {
        d.vars.add(m[1]).add(m[2]);
        d.upstreams.push({ hostVar: m[1], portVar: m[2] });
        addPortDefault(m[2], resolve(m[3], `the default of ${m[2]} in ${f.rel}`), f.rel);
      }
      const def = svcDefOf(f, resolve, fail, svcGuard.store ?? "store", svcFields);
      if (!def) continue;
      if (d.portVar) fail(`${dir}: a second svc_def_t table in ${f.rel}`);
      if (`${def.name}-service` !== name) fail(`${f.rel}: .name "${def.name}" is not the directory's (${name})`);
      d.portVar = def.portEnv;
      addPortDefault(def.portEnv, def.portDefault, f.rel);
      for (const v of svcAlways) d.vars.add(v);
      d.vars.add(def.portEnv);
      if (def.store) for (const v of svcCond.get("store")) d.vars.add(v);
      if (def.flags & (defines.get(svcGuard.redis ?? "SVC_REDIS") ?? NaN)) for (const v of svcCond.get("redis")) d.vars.add(v);
      if (def.upstreams.length) for (const v of svcCond.get("upstreams")) d.vars.add(v);
      for (const u of def.upstreams) {
        for (const s of svcUpstreamSuffixes) d.vars.add(`${u.env}${s}`);
        d.upstreams.push({ hostVar: `${u.env}_SERVICE_HOST`, portVar: `${u.env}_SERVICE_PORT` });
        addPortDefault(`${u.env}_SERVICE_PORT`, u.portDefault, f.rel);
      }
    }
    // a service not (yet) on libsvc reads its port itself
    if (!d.portVar) d.portVar = `${d.app.toUpperCase()}_SERVICE_PORT`;
    d.store = d.vars.has("DATA_DIR");
    d.redis = d.vars.has("REDIS_HOST");
    for (const must of ["LISTEN_HOST", "LOG_LEVEL", d.portVar]) {
      if (!d.vars.has(must)) fail(`the scan found no ${must} for ${name}: is the scanner broken?`);
    }
    daemons.set(name, d);
  }
  const all = new Set([...daemons.values()].flatMap((d) => [...d.vars]));
  for (const must of ["DATA_DIR", "REDIS_HOST", "REDIS_PASSWORD", "RPC_TIMEOUT_MS"]) {
    if (!all.has(must)) fail(`the scan found no ${must} in any daemon: is the scanner broken?`);
  }

  const portDefault = new Map();
  for (const [v, byValue] of portDefaults) {
    if (byValue.size > 1) fail(`${v} has different defaults: ${[...byValue].map(([p, w]) => `${p} (${w})`).join(", ")}`);
    portDefault.set(v, [...byValue.keys()][0]);
  }
  for (const [name, d] of daemons) {
    if (!portDefault.has(d.portVar)) fail(`no default port found for ${name} (${d.portVar})`);
  }
  return { daemons, portDefault, defines, errors };
}

// A svc_def_t table in f: .name, .port_env, .port_default, .flags, whether
// it has a store (its field storeField is set), the upstream table it names;
// null when the file has none.
function svcDefOf(f, resolve, fail, storeField, fields) {
  const m = /\bsvc_def_t\s+(\w+)\s*=\s*\{/.exec(f.code);
  if (!m) return null;
  const start = m.index + m[0].length - 1;
  let end = start, depth = 0;
  for (; end < f.code.length; end++) {
    if (f.code[end] === "{") depth++;
    else if (f.code[end] === "}" && --depth === 0) break;
  }
  const body = f.text.slice(start, end + 1);
  const where = `${f.rel} ${m[1]}`;
  for (const k of topLevelKeys(f.code.slice(start, end + 1))) {
    if (!fields.has(k)) fail(`${where}: .${k} is no field of svc_def_t (${SVC_DAEMON_H})`);
  }
  // the fields at the table's top level: ".key = value" up to the next ",\n    ."
  const field = (k) => new RegExp(`\\.${k}\\s*=\\s*([^,]+?)\\s*,?\\s*(?=\\n\\s*\\.|\\s*\\}$)`).exec(body)?.[1];
  const name = /^"([a-z]+)"$/.exec(field("name") ?? "")?.[1];
  const portEnv = /^"([A-Z][A-Z0-9_]*)"$/.exec(field("port_env") ?? "")?.[1];
  const portTok = field("port_default");
  if (!name || !portEnv || !portTok) {
    fail(`${where}: no .name, .port_env or .port_default the scanner can read`);
    return null;
  }
  let flags = 0;
  for (const tok of (field("flags") ?? "0").split("|").map((s) => s.trim())) {
    const v = /^0x/.test(tok) ? Number(tok.replace(/u$/i, "")) : resolve(tok, `.flags of ${where}`);
    if (v !== undefined) flags |= v;
  }
  const store = !/^(NULL|0)?$/.test(field(storeField) ?? "");
  const upstreams = [];
  const upsName = field("upstreams");
  if (upsName && upsName !== "NULL") {
    const t = new RegExp(`\\bsvc_upstream_def_t\\s+${upsName}\\s*(\\[[^\\]]*\\])?\\s*=\\s*\\{([\\s\\S]*?)\\};`).exec(f.text);
    if (!t) fail(`${where}: .upstreams = ${upsName}, no such svc_upstream_def_t table in ${f.rel}`);
    else {
      for (const u of t[2].matchAll(/(?:\[\w+\]\s*=\s*)?\{\s*"([a-z]+)"\s*,\s*"([A-Z][A-Z0-9_]*)"\s*,\s*(\w+)\s*\}/g)) {
        upstreams.push({ name: u[1], env: u[2], portDefault: resolve(u[3], `the ${u[1]} upstream of ${where}`) });
      }
      if (!upstreams.length) fail(`${where}: cannot read the entries of ${upsName}`);
    }
  }
  return { name, portEnv, portDefault: resolve(portTok, `.port_default of ${where}`), flags, store, upstreams };
}

// The designators (".name =") at the top level of an initializer "{...}".
function topLevelKeys(code) {
  const keys = [];
  let depth = 0;
  for (let i = 0; i < code.length; i++) {
    if (code[i] === "{") depth++;
    else if (code[i] === "}") depth--;
    else if (depth === 1 && code[i] === ".") {
      const m = /^\.([A-Za-z_]\w*)\s*=/.exec(code.slice(i, i + 80));
      if (m && !/[\w)\]]\s*$/.test(code.slice(Math.max(0, i - 40), i))) keys.push(m[1]);
    }
  }
  return keys;
}

// The member names of "struct <tag> { ... }" in code (fields and function
// pointers).
function structFields(code, tag) {
  const m = new RegExp(`\\bstruct\\s+${tag}\\s*\\{`).exec(code);
  const fields = new Set();
  if (!m) return fields;
  let i = m.index + m[0].length, depth = 1, decl = "";
  for (; i < code.length && depth; i++) {
    const ch = code[i];
    if (ch === "{") depth++;
    else if (ch === "}") depth--;
    if (depth === 1 && ch === ";") {
      const fp = /\(\s*\*\s*(\w+)\s*\)/.exec(decl);
      if (fp) fields.add(fp[1]);
      else for (const part of decl.split(",")) fields.add(/(\w+)\s*(\[[^\]]*\])?\s*$/.exec(part)?.[1]);
      decl = "";
    } else if (depth >= 1) {
      decl += ch;
    }
  }
  fields.delete(undefined);
  return fields;
}
