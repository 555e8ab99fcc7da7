// consistency.mjs: the deployment files agree with the daemons' sources.
//   node consistency.mjs RENDERED_K8S_YAML [COMPOSE_FILE]
// (the output of `kubectl kustomize deploy/k8s`; the compose file defaults to
// deploy/docker-compose.yml, its env files are read beside it). Checks:
//  - every environment variable a daemon reads (sources.mjs works out which
//    daemon reads which: its own sources, the libraries it calls, libsvc's
//    svc_def_t tables) is set for that daemon in deploy/docker-compose.yml and
//    in the Kubernetes workloads (ConfigMap/Secret through envFrom), and every
//    variable set there is read by some daemon; REDIS_PASSWORD only from the
//    env file / the Secret, for exactly the daemons that talk to Redis;
//  - every port agrees with the daemons' defaults: the *_PORT settings, the
//    published/container ports, the Services, the probes and the NetworkPolicies;
//    every *_HOST names a compose service / Kubernetes Service on that port;
//    the NetworkPolicies allow exactly the calls in the sources (upstreams,
//    Redis), the ingress to the gateway and PLANNED_EDGES;
//  - the probes run the daemon's own --health (HTTP /health and /ready for the
//    gateway), grace periods cover the SIGTERM drain, SQLite services are
//    single-replica StatefulSets with a volume claim, and the HPA targets only
//    stateless workloads; every container is non-root, read-only, drops all
//    capabilities and has resource requests and limits.
import { readFileSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments } from "yaml";
import { scanSources } from "./sources.mjs";

const REPO = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const renderedPath = process.argv[2];
if (!renderedPath) {
  console.error("usage: node consistency.mjs RENDERED_K8S_YAML [COMPOSE_FILE]");
  process.exit(2);
}
const SECRET_VARS = new Set(["REDIS_PASSWORD"]);
const errors = [];
const fail = (msg) => errors.push(msg);

// ---- the sources (sources.mjs: which daemon reads which variable) --------------
const scan = scanSources(REPO);
for (const e of scan.errors) fail(e);
const { daemons, portDefault, defines } = scan;
// every variable some daemon reads
const envVars = new Set([...daemons.values()].flatMap((d) => [...d.vars]));
const svcDrainS = (defines.get("PROTO_RPC_DRAIN_TIMEOUT_MS_DEFAULT") ?? NaN) / 1000;
const gwDrainS = (defines.get("GW_HTTP_DRAIN_TIMEOUT_MS") ?? NaN) / 1000;
if (!(svcDrainS > 0) || !(gwDrainS > 0)) fail("sources: drain timeouts not found");

// ---- helpers -------------------------------------------------------------------
// env: what one daemon's container gets; secretEnvNames: which of it comes
// from the env file / the Secret. Also collects the names no daemon reads.
const unread = new Map(); // "compose" / "k8s" -> Set of names
function checkEnv(where, daemon, env, secretEnvNames) {
  const d = daemons.get(daemon);
  for (const v of d.vars) {
    if (SECRET_VARS.has(v)) continue;
    if (!env.has(v)) fail(`${where}: ${daemon} lacks ${v}`);
  }
  for (const v of SECRET_VARS) {
    if (env.has(v) && !secretEnvNames.has(v)) fail(`${where}: ${daemon} gets ${v} in plain settings, not from the secret`);
    if (d.vars.has(v) && !secretEnvNames.has(v)) fail(`${where}: ${daemon} reads ${v} but gets none from the secret`);
    if (!d.vars.has(v) && secretEnvNames.has(v)) fail(`${where}: ${daemon} gets ${v} from the secret but never reads it`);
  }
  for (const [v, def] of portDefault) {
    if (env.has(v) && Number(env.get(v)) !== def) fail(`${where}: ${daemon} ${v}=${env.get(v)}, the daemons' default is ${def}`);
  }
  const kind = where.split(" ")[0];
  for (const v of env.keys()) {
    if (!envVars.has(v)) unread.set(kind, (unread.get(kind) ?? new Set()).add(v));
  }
}
const parseDuration = (s) => {
  if (typeof s === "number") return s;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(String(s));
  if (!m) return NaN;
  return Number(m[1]) * { ms: 0.001, s: 1, m: 60 }[m[2]];
};

// ---- docker-compose.yml --------------------------------------------------------
const composePath = process.argv[3] ?? join(REPO, "deploy", "docker-compose.yml");
const composeDir = dirname(composePath);
let compose;
try {
  compose = parse(readFileSync(composePath, "utf8"), { merge: true });
} catch (e) {
  console.error(`INCONSISTENT: ${composePath}: ${e.message}`);
  process.exit(1);
}
const envFile = (f) => {
  const m = new Map();
  for (const line of readFileSync(join(composeDir, f), "utf8").split("\n")) {
    const t = line.trim();
    if (!t || t.startsWith("#")) continue;
    const i = t.indexOf("=");
    if (i > 0) m.set(t.slice(0, i), t.slice(i + 1));
  }
  return m;
};
const services = compose.services ?? {};
const seen = new Set();
for (const [sname, s] of Object.entries(services)) {
  const cmd = Array.isArray(s.command) ? s.command : String(s.command ?? "").split(/\s+/);
  const daemon = cmd[0];
  if (!daemons.has(daemon)) continue;
  seen.add(daemon);
  const where = `compose service ${sname}`;
  const env = new Map();
  const raw = s.environment ?? {};
  if (Array.isArray(raw)) for (const e of raw) { const i = e.indexOf("="); env.set(i < 0 ? e : e.slice(0, i), i < 0 ? "" : e.slice(i + 1)); }
  else for (const [k, v] of Object.entries(raw)) env.set(k, v === null ? "" : String(v));
  const secretNames = new Set();
  for (const f of [].concat(s.env_file ?? [])) {
    for (const [k, v] of envFile(f)) { env.set(k, v); secretNames.add(k); }
  }
  checkEnv(where, daemon, env, secretNames);
  for (const [k, v] of env) {
    const m = /^([A-Z]+)_SERVICE_HOST$/.exec(k) || (k === "REDIS_HOST" && [k, "REDIS"]);
    if (m && !services[v]) fail(`${where}: ${k}=${v} names no compose service`);
  }
  const hc = s.healthcheck?.test ?? [];
  if (JSON.stringify(hc) !== JSON.stringify(["CMD", daemon, "--health"])) {
    fail(`${where}: healthcheck must be ["CMD", "${daemon}", "--health"], is ${JSON.stringify(hc)}`);
  }
  if (s.read_only !== true) fail(`${where}: read_only must be true`);
  if (!(s.cap_drop ?? []).includes("ALL")) fail(`${where}: cap_drop must include ALL`);
  const need = daemon === "gateway" ? gwDrainS : svcDrainS;
  if (!(parseDuration(s.stop_grace_period ?? "10s") > need)) fail(`${where}: stop_grace_period must exceed the ${need} s drain`);
  if (daemon === "gateway") {
    const targets = (s.ports ?? []).map((p) => typeof p === "object" ? Number(p.target) : Number(String(p).split(":").pop()));
    if (targets.length !== 1 || targets[0] !== portDefault.get("GATEWAY_PORT")) {
      fail(`${where}: must publish exactly the container port ${portDefault.get("GATEWAY_PORT")}, has ${JSON.stringify(s.ports)}`);
    }
  } else if (s.ports) {
    fail(`${where}: only the gateway publishes a port`);
  }
  if (daemons.get(daemon).store && !(s.volumes ?? []).some((v) => String(v).endsWith(`:${env.get("DATA_DIR")}`))) {
    fail(`${where}: no volume mounted at DATA_DIR (${env.get("DATA_DIR")})`);
  }
}
for (const d of daemons.keys()) if (!seen.has(d)) fail(`compose: no service runs ${d}`);
if (services.redis) {
  const cmd = [].concat(services.redis.command ?? []).join(" ");
  const port = /--port\s+(\d+)/.exec(cmd)?.[1] ?? "6379";
  if (Number(port) !== portDefault.get("REDIS_PORT")) fail(`compose redis: listens on ${port}, REDIS_PORT default is ${portDefault.get("REDIS_PORT")}`);
  if (!/--requirepass/.test(cmd)) fail("compose redis: not started with --requirepass");
} else {
  fail("compose: no redis service");
}

// ---- Kubernetes (rendered) -------------------------------------------------------
const objs = parseAllDocuments(readFileSync(renderedPath, "utf8")).map((d) => d.toJS()).filter(Boolean);
const byKind = (k) => objs.filter((o) => o.kind === k);
const configMaps = new Map(byKind("ConfigMap").map((o) => [o.metadata.name, o.data ?? {}]));
const secrets = new Map(byKind("Secret").map((o) => [o.metadata.name,
  { ...(o.data ?? {}), ...(o.stringData ?? {}) }]));
const k8sServices = byKind("Service");
const labelsMatch = (sel, labels) => sel && Object.entries(sel).every(([k, v]) => labels?.[k] === v);
const workloads = [...byKind("Deployment"), ...byKind("StatefulSet")];
const k8sSeen = new Map();
for (const w of workloads) {
  const where = `k8s ${w.kind}/${w.metadata.name}`;
  const pod = w.spec.template.spec;
  const podLabels = w.spec.template.metadata?.labels ?? {};
  const podSec = pod.securityContext ?? {};
  for (const c of pod.containers) {
    const cw = `${where} container ${c.name}`;
    const sec = c.securityContext ?? {};
    if (sec.readOnlyRootFilesystem !== true) fail(`${cw}: readOnlyRootFilesystem must be true`);
    if (sec.allowPrivilegeEscalation !== false) fail(`${cw}: allowPrivilegeEscalation must be false`);
    if (!(sec.capabilities?.drop ?? []).includes("ALL")) fail(`${cw}: capabilities must drop ALL`);
    if ((sec.runAsNonRoot ?? podSec.runAsNonRoot) !== true) fail(`${cw}: runAsNonRoot must be true`);
    if (!c.resources?.requests?.cpu || !c.resources?.requests?.memory ||
        !c.resources?.limits?.cpu || !c.resources?.limits?.memory) fail(`${cw}: needs cpu and memory requests and limits`);
    if (!c.livenessProbe || !c.readinessProbe) fail(`${cw}: needs liveness and readiness probes`);
    const daemon = (c.command ?? c.args ?? [])[0];
    if (!daemons.has(daemon)) continue;
    k8sSeen.set(daemon, w);
    if (pod.enableServiceLinks !== false) fail(`${where}: enableServiceLinks must be false (Kubernetes would inject USER_SERVICE_PORT=tcp://... and the like)`);
    const env = new Map();
    const secretNames = new Set();
    for (const ef of c.envFrom ?? []) {
      if (ef.configMapRef) {
        const data = configMaps.get(ef.configMapRef.name);
        if (!data) { fail(`${cw}: envFrom names a missing ConfigMap ${ef.configMapRef.name}`); continue; }
        for (const [k, v] of Object.entries(data)) env.set(k, String(v));
      }
      if (ef.secretRef) {
        const data = secrets.get(ef.secretRef.name);
        if (!data) { fail(`${cw}: envFrom names a missing Secret ${ef.secretRef.name}`); continue; }
        for (const k of Object.keys(data)) { env.set(k, "(secret)"); secretNames.add(k); }
      }
    }
    for (const e of c.env ?? []) {
      env.set(e.name, e.value ?? "(ref)");
      if (e.valueFrom?.secretKeyRef) secretNames.add(e.name);
    }
    checkEnv(cw, daemon, env, secretNames);
    const { portVar } = daemons.get(daemon);
    const port = portDefault.get(portVar);
    const cport = (c.ports ?? []).find((p) => p.containerPort === port);
    if (!cport) fail(`${cw}: no containerPort ${port} (${portVar})`);
    const svc = k8sServices.find((s) => labelsMatch(s.spec.selector, podLabels));
    if (!svc) fail(`${where}: no Service selects its pods`);
    else {
      const sp = svc.spec.ports ?? [];
      const ok = sp.length === 1 && sp[0].port === port &&
        (sp[0].targetPort === port || (cport && sp[0].targetPort === cport.name));
      if (!ok) fail(`k8s Service/${svc.metadata.name}: must expose ${port} -> ${port}, has ${JSON.stringify(sp)}`);
      if ((svc.spec.type ?? "ClusterIP") !== "ClusterIP") fail(`k8s Service/${svc.metadata.name}: must be ClusterIP`);
    }
    // the *_HOST settings name Services listening on the matching *_PORT
    for (const [k, v] of env) {
      const m = /^([A-Z]+_SERVICE|REDIS)_HOST$/.exec(k);
      if (!m) continue;
      const pv = k.replace(/HOST$/, "PORT");
      const target = k8sServices.find((s) => s.metadata.name === v);
      if (!target) fail(`${cw}: ${k}=${v} names no Service`);
      else if (!(target.spec.ports ?? []).some((p) => p.port === Number(env.get(pv)))) {
        fail(`${cw}: Service/${v} does not expose ${pv}=${env.get(pv)}`);
      }
    }
    if (daemon === "gateway") {
      const lp = c.livenessProbe?.httpGet, rp = c.readinessProbe?.httpGet;
      const portOk = (p) => p && (p.port === port || p.port === cport?.name);
      if (!portOk(lp) || lp.path !== "/health") fail(`${cw}: livenessProbe must be httpGet /health on ${port}`);
      if (!portOk(rp) || rp.path !== "/ready") fail(`${cw}: readinessProbe must be httpGet /ready on ${port}`);
      const preStop = (c.lifecycle?.preStop?.exec?.command ?? []);
      const sleepS = preStop[0] === "sleep" ? Number(preStop[1]) : 0;
      if (!((pod.terminationGracePeriodSeconds ?? 30) > sleepS + gwDrainS)) {
        fail(`${where}: terminationGracePeriodSeconds must exceed preStop ${sleepS} s + drain ${gwDrainS} s`);
      }
    } else {
      for (const probe of ["livenessProbe", "readinessProbe"]) {
        const cmd = c[probe]?.exec?.command;
        if (JSON.stringify(cmd) !== JSON.stringify([daemon, "--health"])) fail(`${cw}: ${probe} must exec ["${daemon}", "--health"]`);
      }
      if (!((pod.terminationGracePeriodSeconds ?? 30) > svcDrainS)) fail(`${where}: terminationGracePeriodSeconds must exceed the ${svcDrainS} s drain`);
      // SQLite: one replica, a claim mounted at DATA_DIR
      if (daemons.get(daemon).store) {
        if (w.kind !== "StatefulSet" || w.spec.replicas !== 1) fail(`${where}: keeps SQLite: must be a StatefulSet with replicas: 1`);
        const claim = (w.spec.volumeClaimTemplates ?? []).map((t) => t.metadata.name);
        const mount = (c.volumeMounts ?? []).find((m) => m.mountPath === env.get("DATA_DIR"));
        if (!mount || !claim.includes(mount.name)) fail(`${where}: DATA_DIR ${env.get("DATA_DIR")} must be a volumeClaimTemplate`);
      }
    }
  }
}
for (const d of daemons.keys()) if (!k8sSeen.has(d)) fail(`k8s: no workload runs ${d}`);
const redisSvc = k8sServices.find((s) => s.metadata.name === configMaps.get("nestc-config")?.REDIS_HOST);
if (!redisSvc || !(redisSvc.spec.ports ?? []).some((p) => p.port === portDefault.get("REDIS_PORT"))) {
  fail(`k8s: no Redis Service on ${portDefault.get("REDIS_PORT")}`);
}
for (const h of byKind("HorizontalPodAutoscaler")) {
  const t = h.spec.scaleTargetRef;
  const w = workloads.find((x) => x.kind === t.kind && x.metadata.name === t.name);
  if (!w) fail(`k8s HPA/${h.metadata.name}: targets a missing ${t.kind}/${t.name}`);
  else if (w.kind === "StatefulSet" || w.spec.template.spec.containers.some((c) => (c.command ?? [])[0] !== "gateway")) {
    fail(`k8s HPA/${h.metadata.name}: ${t.kind}/${t.name} keeps state and must not be autoscaled`);
  }
}
// NetworkPolicies: ports are the selected pods' ports; the expected edges exist
const appOf = (sel) => sel?.matchLabels?.["app.kubernetes.io/name"];
const workloadPorts = new Map(workloads.map((w) => [w.spec.template.metadata.labels["app.kubernetes.io/name"],
  w.spec.template.spec.containers.flatMap((c) => (c.ports ?? []).map((p) => p.containerPort))]));
const allowed = new Set(); // "from->to"
for (const np of byKind("NetworkPolicy")) {
  const to = appOf(np.spec.podSelector);
  for (const rule of np.spec.ingress ?? []) {
    for (const p of rule.ports ?? []) {
      if (to && !(workloadPorts.get(to) ?? []).includes(p.port)) fail(`k8s NetworkPolicy/${np.metadata.name}: port ${p.port} is not a port of ${to}`);
    }
    for (const f of rule.from ?? [{ podSelector: {} }]) allowed.add(`${appOf(f.podSelector) ?? "*"}->${to}`);
  }
}
// Who must be able to reach whom: each daemon its upstreams (the sources'
// tables), the daemons that read REDIS_HOST Redis, anyone the gateway; and
// the calls that are being built (PLANNED_EDGES): allowed ahead of the code.
const PLANNED_EDGES = [
  "gateway->inventory", // the gateway's /products routes
  "order->inventory", // the order saga: reserve, commit, release
];
const appByPortVar = new Map([...daemons.values()].map((d) => [d.portVar, d.app]));
const expectedEdges = ["*->gateway", ...PLANNED_EDGES];
for (const [name, d] of daemons) {
  for (const u of d.upstreams) {
    const to = appByPortVar.get(u.portVar);
    if (!to) fail(`sources: ${name} calls ${u.portVar}, which is no daemon's port`);
    else expectedEdges.push(`${d.app}->${to}`);
  }
  if (d.redis) expectedEdges.push(`${d.app}->redis`);
}
for (const e of expectedEdges) if (!allowed.has(e)) fail(`k8s NetworkPolicy: no rule allows ${e}`);
for (const e of allowed) if (!expectedEdges.includes(e)) fail(`k8s NetworkPolicy: unexpected rule ${e}`);
if (!byKind("NetworkPolicy").some((np) => Object.keys(np.spec.podSelector ?? {}).length === 0 && !np.spec.ingress)) {
  fail("k8s NetworkPolicy: no default deny of ingress");
}

// a setting given to the daemons that none of them reads: a typo, or left over
for (const [kind, names] of unread) {
  for (const v of names) fail(`${kind}: ${v} is set, but no daemon reads it`);
}

if (errors.length) {
  for (const e of errors) console.error(`INCONSISTENT: ${e}`);
  process.exit(1);
}
console.log(`ok consistency: ${envVars.size} environment variables and ${portDefault.size} ports ` +
  `(${[...portDefault].map(([k, v]) => `${k}=${v}`).join(" ")}) agree across sources, compose and Kubernetes`);
