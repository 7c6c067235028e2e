import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';
import { type Config, type ConfigInput, configSchema } from './schema.ts';

export const ENV_PREFIX = 'TRAILWATCH_';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/**
 * Environment overrides: `TRAILWATCH_DETECTOR__BUCKET_MS=30000` sets `detector.bucketMs`
 * (`__` separates levels, SNAKE_CASE maps to camelCase; values are parsed as JSON when they
 * parse, else kept as strings). `KAFKA_BROKERS` and `SCHEMA_REGISTRY_URL` are accepted too,
 * as the Kafka ecosystem spells them.
 */
export function configFromEnv(env: NodeJS.ProcessEnv): JsonObject {
  const out: JsonObject = {};
  const set = (path: string[], value: Json): void => {
    let node = out;
    for (const key of path.slice(0, -1)) {
      const next = node[key];
      if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
      node = node[key] as JsonObject;
    }
    node[path[path.length - 1] as string] = value;
  };
  if (env.KAFKA_BROKERS) set(['kafka', 'brokers'], splitList(env.KAFKA_BROKERS));
  if (env.SCHEMA_REGISTRY_URL) set(['registry', 'url'], env.SCHEMA_REGISTRY_URL);
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined) continue;
    const rest = name.slice(ENV_PREFIX.length);
    // Variables that are not configuration (cache dir, stack ports, log level shortcut).
    if (!rest.includes('__')) continue;
    const path = rest.split('__').map(snakeToCamel);
    set(path, parseEnvValue(path, raw));
  }
  return out;
}

function splitList(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function snakeToCamel(s: string): string {
  return s.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

function parseEnvValue(path: string[], raw: string): Json {
  if (path[path.length - 1] === 'brokers') return splitList(raw);
  // Secrets and free text stay strings even when they look like JSON.
  if (/password|username|url|file|id$|topic/i.test(path[path.length - 1] ?? '')) return raw;
  try {
    return JSON.parse(raw) as Json;
  } catch {
    return raw;
  }
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function deepMerge(base: JsonObject, over: JsonObject): JsonObject {
  const out: JsonObject = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const prev = out[k];
    out[k] = isObject(prev) && isObject(v) ? deepMerge(prev, v) : v;
  }
  return out;
}

export interface LoadConfigOptions {
  /** A JSON config file. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Applied last (CLI flags, tests). */
  overrides?: ConfigInput;
}

/** Defaults ← file ← environment ← overrides, validated; every problem is reported at once. */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  let merged: JsonObject = {};
  if (options.file) {
    let text: string;
    try {
      text = readFileSync(options.file, 'utf8');
    } catch (err) {
      throw new ConfigError([`cannot read config file ${options.file}: ${(err as Error).message}`]);
    }
    try {
      const parsed: unknown = JSON.parse(text);
      if (!isObject(parsed)) throw new Error('the top level must be an object');
      merged = parsed;
    } catch (err) {
      throw new ConfigError([`config file ${options.file} is not valid JSON: ${(err as Error).message}`]);
    }
  }
  merged = deepMerge(merged, configFromEnv(options.env ?? process.env));
  if (options.overrides) merged = deepMerge(merged, options.overrides as JsonObject);
  return validateConfig(merged);
}

export function validateConfig(input: unknown): Config {
  const result = configSchema.safeParse(input);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    // Report the cross-key rules too, judged on what did validate, so one run lists every error.
    const rest = configSchema.safeParse(
      withoutPaths(
        input,
        result.error.issues.flatMap((i) => (i.code === 'unrecognized_keys' ? i.keys.map((k) => [...i.path, k]) : [i.path])),
      ),
    );
    if (rest.success) problems.push(...semanticProblems(rest.data));
    throw new ConfigError(problems);
  }
  const config = result.data;
  const problems = semanticProblems(config);
  if (problems.length > 0) throw new ConfigError(problems);
  return resolveSecrets(config);
}

function withoutPaths(input: unknown, paths: PropertyKey[][]): unknown {
  const copy = structuredClone(input) as JsonObject;
  for (const path of paths) {
    let node: unknown = copy;
    for (const key of path.slice(0, -1)) node = isObject(node) ? node[String(key)] : undefined;
    const last = path[path.length - 1];
    if (isObject(node) && last !== undefined) delete node[String(last)];
  }
  return copy;
}

/** Rules that span several keys. */
function semanticProblems(c: Config): string[] {
  const d = c.detector;
  const problems: string[] = [];
  if (d.startAfterBuckets * d.bucketMs > d.maxDurationMs) {
    problems.push(
      `detector.startAfterBuckets × detector.bucketMs (${d.startAfterBuckets * d.bucketMs} ms) exceeds detector.maxDurationMs (${d.maxDurationMs} ms): no Insight could ever start`,
    );
  }
  if (d.baselineWindowMs < d.bucketMs * 2) problems.push('detector.baselineWindowMs must hold at least two buckets');
  if (d.minHistoryMs > d.baselineWindowMs) problems.push('detector.minHistoryMs must not exceed detector.baselineWindowMs');
  if (!d.scopes.action && !d.scopes.principalAction) problems.push('detector.scopes: enable at least one of action, principalAction');
  if (!d.insightTypes.apiCallRate && !d.insightTypes.apiErrorRate)
    problems.push('detector.insightTypes: enable at least one of apiCallRate, apiErrorRate');
  if (c.kafka.sasl && !c.kafka.sasl.password && !c.kafka.sasl.passwordFile) {
    problems.push('kafka.sasl: set password (TRAILWATCH_KAFKA__SASL__PASSWORD) or passwordFile');
  }
  if (c.registry.username && !c.registry.password && !c.registry.passwordFile) {
    problems.push('registry.username is set: set registry.password (TRAILWATCH_REGISTRY__PASSWORD) or registry.passwordFile');
  }
  if (!c.registry.username && (c.registry.password || c.registry.passwordFile)) {
    problems.push('registry: a password without registry.username is never sent; set registry.username');
  }
  const tls = c.kafka.tls;
  if (!tls.enabled && (tls.caFile || tls.certFile || tls.keyFile)) problems.push('kafka.tls: files are set but kafka.tls.enabled is false');
  if (Boolean(tls.certFile) !== Boolean(tls.keyFile)) problems.push('kafka.tls: a client certificate needs both certFile and keyFile');
  return problems;
}

function resolveSecrets(c: Config): Config {
  const read = (file: string, what: string): string => {
    try {
      return readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw new ConfigError([`cannot read ${what} from ${file}: ${(err as Error).message}`]);
    }
  };
  const sasl = c.kafka.sasl;
  if (sasl && !sasl.password && sasl.passwordFile) sasl.password = read(sasl.passwordFile, 'kafka.sasl.passwordFile');
  if (!c.registry.password && c.registry.passwordFile) c.registry.password = read(c.registry.passwordFile, 'registry.passwordFile');
  return c;
}

/** The config with every secret replaced by ****, for logs and `trailwatch config`. */
export function redactConfig(c: Config): Config {
  const copy = structuredClone(c);
  if (copy.kafka.sasl?.password) copy.kafka.sasl.password = '****';
  if (copy.registry.password) copy.registry.password = '****';
  return copy;
}
