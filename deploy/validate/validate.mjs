// validate.mjs: offline validation of Kubernetes manifests (multi-document YAML).
//   node validate.mjs FILE...                 every object must be valid
//   node validate.mjs --expect-invalid FILE...  every file must be rejected, with
//       the reason named by its "# expect: <text>" comment lines (test data).
// Two checks per object, dispatched on apiVersion/kind:
//  1. kubernetes-models validates it against the Kubernetes JSON schema (types,
//     required fields, enums). Those schemas accept unknown fields.
//  2. Field names are checked strictly against the model classes of
//     @kubernetes/client-node (attributeTypeMap of every type, recursively),
//     which describe the API of a current Kubernetes release: an unknown or
//     misspelt field, or an apiVersion/kind that release no longer serves
//     (e.g. extensions/v1beta1 Deployment), is an error.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
// Only the models: the package's main entry loads an HTTP stack that crashes
// on Node.js 20.
import * as models from "@kubernetes/client-node/dist/gen/models/all.js";

const ARRAY_RE = /^Array<(.+)>$/;
const MAP_RE = /^\{ \[key: string\]: (.+); \}$/;

function capitalize(s) {
  return s.charAt(0).toUpperCase() + s.slice(1);
}

// The client-node class of a top-level object, e.g. apps/v1 Deployment ->
// V1Deployment; some carry their group as a prefix (events.k8s.io/v1 Event ->
// EventsV1Event).
function modelClassFor(apiVersion, kind) {
  const parts = apiVersion.split("/");
  const version = capitalize(parts[parts.length - 1]);
  const group = parts.length > 1 ? capitalize(parts[0].split(".")[0]) : "Core";
  for (const name of [`${group}${version}${kind}`, `${version}${kind}`]) {
    const cls = models[name];
    if (typeof cls === "function" && Array.isArray(cls.attributeTypeMap)) return cls;
  }
  return null;
}

// Walk value as the client-node type `type`, reporting every unknown field.
function checkFields(value, type, path, errors) {
  if (value === null || value === undefined) return;
  let m = ARRAY_RE.exec(type);
  if (m) {
    if (Array.isArray(value)) value.forEach((v, i) => checkFields(v, m[1], `${path}[${i}]`, errors));
    return; // a wrong type is the schema's to report
  }
  m = MAP_RE.exec(type);
  if (m) {
    if (typeof value === "object" && !Array.isArray(value)) {
      for (const [k, v] of Object.entries(value)) checkFields(v, m[1], `${path}.${k}`, errors);
    }
    return;
  }
  const cls = models[type];
  if (typeof cls !== "function" || !Array.isArray(cls.attributeTypeMap)) return; // a scalar
  if (typeof value !== "object" || Array.isArray(value)) return;
  const known = new Map(cls.attributeTypeMap.map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    if (!known.has(k)) {
      errors.push(`${path}.${k}: unknown field (${type} has: ${[...known.keys()].join(", ")})`);
    } else {
      checkFields(v, known.get(k), `${path}.${k}`, errors);
    }
  }
}

async function schemaClassFor(apiVersion, kind) {
  let mod;
  try {
    mod = await import(`kubernetes-models/${apiVersion}`);
  } catch {
    return null;
  }
  return typeof mod[kind] === "function" ? mod[kind] : null;
}

// Returns the list of problems of one object (empty when it is valid).
async function validateObject(obj) {
  const errors = [];
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    return ["not a mapping"];
  }
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== "string" || typeof kind !== "string") {
    return ["apiVersion and kind must be strings"];
  }
  const Schema = await schemaClassFor(apiVersion, kind);
  if (!Schema) return [`unknown apiVersion/kind ${apiVersion} ${kind}`];
  try {
    new Schema(structuredClone(obj)).validate();
  } catch (e) {
    const details = Array.isArray(e.errors)
      ? e.errors.map((x) => `${x.instancePath || "/"} ${x.message}`)
      : [String(e.message || e)];
    for (const d of details) errors.push(`schema: ${d}`);
  }
  const Model = modelClassFor(apiVersion, kind);
  if (!Model) {
    errors.push(`${apiVersion} ${kind} is not served by current Kubernetes (removed or never existed)`);
  } else {
    checkFields(obj, Model.name, kind, errors);
  }
  return errors;
}

async function validateFile(file) {
  const problems = [];
  let count = 0;
  const docs = parseAllDocuments(readFileSync(file, "utf8"));
  for (const doc of docs) {
    if (doc.errors.length) {
      problems.push(`YAML: ${doc.errors.map((e) => e.message).join("; ")}`);
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue; // an empty document
    count++;
    const name = `${obj?.kind ?? "?"}/${obj?.metadata?.name ?? "?"}`;
    for (const p of await validateObject(obj)) problems.push(`${name}: ${p}`);
  }
  return { count, problems };
}

async function main() {
  const args = process.argv.slice(2);
  const expectInvalid = args[0] === "--expect-invalid";
  const files = expectInvalid ? args.slice(1) : args;
  if (files.length === 0) {
    console.error("usage: node validate.mjs [--expect-invalid] FILE...");
    process.exit(2);
  }
  let failed = false;
  for (const file of files) {
    const { count, problems } = await validateFile(file);
    if (!expectInvalid) {
      if (count === 0) problems.push("no Kubernetes object in the file");
      if (problems.length) {
        failed = true;
        for (const p of problems) console.error(`INVALID ${file}: ${p}`);
      } else {
        console.log(`ok ${file}: ${count} object(s) valid`);
      }
      continue;
    }
    const expected = readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l.startsWith("# expect: "))
      .map((l) => l.slice("# expect: ".length).trim());
    const text = problems.join("\n");
    const missing = expected.filter((e) => !text.includes(e));
    if (problems.length === 0) {
      failed = true;
      console.error(`NOT REJECTED ${file}: the validator accepted a broken manifest`);
    } else if (expected.length === 0 || missing.length) {
      failed = true;
      console.error(`WRONG REASON ${file}: expected ${JSON.stringify(missing.length ? missing : "an '# expect:' line")}, got:\n  ${problems.join("\n  ")}`);
    } else {
      console.log(`ok ${file}: rejected (${problems[0]})`);
    }
  }
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
