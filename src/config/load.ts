import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.ts';
import { type ConfigFile, readConfigFile } from './file.ts';
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
  return readEnv(env).config;
}

/** One environment variable that set part of the config: what it set, and as what. */
interface EnvSetting {
  name: string;
  raw: string;
  path: string[];
  value: Json;
}

function readEnv(env: NodeJS.ProcessEnv): { config: JsonObject; settings: EnvSetting[] } {
  const out: JsonObject = {};
  const settings: EnvSetting[] = [];
  const set = (name: string, raw: string, path: string[], value: Json): void => {
    settings.push({ name, raw, path, value });
    let node = out;
    for (const key of path.slice(0, -1)) {
      const next = node[key];
      if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
      node = node[key] as JsonObject;
    }
    node[path[path.length - 1] as string] = value;
  };
  if (env.KAFKA_BROKERS) set('KAFKA_BROKERS', env.KAFKA_BROKERS, ['kafka', 'brokers'], splitList(env.KAFKA_BROKERS));
  if (env.SCHEMA_REGISTRY_URL) set('SCHEMA_REGISTRY_URL', env.SCHEMA_REGISTRY_URL, ['registry', 'url'], env.SCHEMA_REGISTRY_URL);
  for (const [name, raw] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined) continue;
    const rest = name.slice(ENV_PREFIX.length);
    // Variables that are not configuration (cache dir, stack ports, log level shortcut).
    if (!rest.includes('__')) continue;
    const path = rest.split('__').map(snakeToCamel);
    set(name, raw, path, parseEnvValue(path, raw));
  }
  return { config: out, settings };
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
  /** A config file: YAML (`.yaml`, `.yml`) or JSON. */
  file?: string | undefined;
  env?: NodeJS.ProcessEnv;
  /** Applied last (CLI flags, tests). */
  overrides?: ConfigInput;
}

/** One thing wrong with a config: where (its path in the config, and its line in a YAML file) and what. */
export interface ConfigProblem {
  /** Empty for a rule that spans several keys (the message names them). */
  path: PropertyKey[];
  message: string;
  line?: number | null;
}

/** `detector.overrides[2].match.region`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : out === '' ? String(key) : `.${String(key)}`;
  return out;
}

/**
 * `detector.overrides[2].match.region: message`, after where the value came from when known: the
 * file (`config.yaml:12`, as `config check` prints it) or the environment variable
 * (`TRAILWATCH_DETECTOR__SCORE_THRESHOLD=abc`).
 */
export function formatProblem(p: ConfigProblem, source?: string | null): string {
  const text = p.path.length > 0 ? `${formatPath(p.path)}: ${p.message}` : p.message;
  return source ? `${source}: ${text}` : text;
}

/** The file's contents, parsed; a parse error is a ConfigError naming the file, line and column. */
export function readConfigInput(file: string): ConfigFile {
  let parsed: ConfigFile;
  try {
    parsed = readConfigFile(file);
  } catch (err) {
    throw new ConfigError([`cannot read config file ${file}: ${(err as Error).message}`]);
  }
  if (parsed.data === null) throw new ConfigError(parsed.errors);
  return parsed;
}

/** Defaults ← file ← environment ← overrides, validated; every problem is reported at once. */
export function loadConfig(options: LoadConfigOptions = {}): Config {
  return loadConfigFrom(options.file ? readConfigInput(options.file) : null, options);
}

/** As loadConfig, from a file already read (`run --watch` hashes what it validates). */
export function loadConfigFrom(file: ConfigFile | null, options: Omit<LoadConfigOptions, 'file'> = {}): Config {
  let merged: JsonObject = file?.data ? (file.data as JsonObject) : {};
  merged = deepMerge(merged, configFromEnv(options.env ?? process.env));
  const env = readEnv(options.env ?? process.env);
  merged = deepMerge(merged, env.config);
  if (options.overrides) merged = deepMerge(merged, options.overrides as JsonObject);
  const { config, problems } = checkConfig(merged);
  if (!config) {
    const sourceOf = problemSource(file, env.settings, (options.overrides ?? {}) as JsonObject);
    throw new ConfigError(problems.map((p) => formatProblem(p, sourceOf(p.path))));
  }
  return resolveSecrets(config);
}

/**
 * How far `path` reaches into `layer`: Infinity when the layer sets the value at `path` (itself,
 * or an array or scalar above it, which merging replaces whole), else how many of its keys the
 * layer has (a missing key is found in the object that should hold it).
 */
function reach(layer: Json | undefined, path: readonly PropertyKey[]): number {
  let node: Json | undefined = layer;
  for (let depth = 0; depth < path.length; depth++) {
    if (node === undefined) return depth - 1;
    if (typeof node !== 'object' || node === null || Array.isArray(node)) return Number.POSITIVE_INFINITY;
    node = node[String(path[depth])];
  }
  return node === undefined ? path.length - 1 : Number.POSITIVE_INFINITY;
}

/** reach() for one variable: its value placed at its path. */
function reachSetting(s: EnvSetting, path: readonly PropertyKey[]): number {
  const shared = s.path.findIndex((key, i) => path[i] !== key);
  if (shared !== -1) return shared;
  if (s.path.length >= path.length) return Number.POSITIVE_INFINITY;
  const below = reach(s.value, path.slice(s.path.length));
  return below === Number.POSITIVE_INFINITY ? below : s.path.length + below;
}

/** `KAFKA_BROKERS=a:9092`, the value masked for a secret and a URL's credentials left out. */
function envText(s: EnvSetting): string {
  const value = /password|secret|token/i.test(s.name) ? '****' : s.raw.replace(/\/\/[^/@\s]*@/, '//****@');
  const shown = value.length > 80 ? `${value.slice(0, 77)}...` : value;
  // Quoted as a shell would need it, so the line can be pasted back.
  const quoted = /^[\w.:,/@[\]*+-]*$/.test(shown) ? shown : shown.includes("'") ? JSON.stringify(shown) : `'${shown}'`;
  return `${s.name}=${quoted}`;
}

/**
 * Where the value a problem is about came from, by the order they were merged: flags and
 * overrides (nothing to name: the caller's own), then the environment, then the file. For a key
 * that is missing, the layer holding the object it is missing from. Null for a default or a rule
 * across keys.
 */
function problemSource(file: ConfigFile | null, env: EnvSetting[], overrides: JsonObject) {
  return (path: readonly PropertyKey[]): string | null => {
    if (path.length === 0 || reach(overrides, path) === Number.POSITIVE_INFINITY) return null;
    // The last variable first: it won the merge (TRAILWATCH_KAFKA__BROKERS over KAFKA_BROKERS).
    const layers = [...env].reverse().map((s) => ({ depth: reachSetting(s, path), name: () => envText(s) }));
    if (file?.data) {
      const name = () => {
        const line = file.lineOf(path);
        return line === null ? file.path : `${file.path}:${line}`;
      };
      layers.push({ depth: reach(file.data as JsonObject, path), name });
    }
    const owner = layers.find((l) => l.depth === Number.POSITIVE_INFINITY);
    if (owner) return owner.name();
    let best: (typeof layers)[number] | undefined;
    for (const l of layers) if (l.depth >= path.length - 1 && l.depth > (best?.depth ?? -1)) best = l;
    return best ? best.name() : null;
  };
}

export function validateConfig(input: unknown): Config {
  const { config, problems } = checkConfig(input);
  if (!config) throw new ConfigError(problems.map((p) => formatProblem(p)));
  return resolveSecrets(config);
}

/** Every problem of a config (schema and cross-key rules), and the config when there is none. Secrets are not read. */
export function checkConfig(input: unknown): { config: Config | null; problems: ConfigProblem[] } {
  const result = configSchema.safeParse(input);
  if (!result.success) {
    const problems: ConfigProblem[] = result.error.issues.flatMap((i) =>
      // One problem per unknown key, each at its own path (and line).
      i.code === 'unrecognized_keys'
        ? i.keys.map((k) => ({ path: [...i.path, k], message: 'unknown key' }))
        : [{ path: [...i.path], message: i.message }],
    );
    // Report the cross-key rules too, judged on what did validate, so one run lists every error.
    const rest = configSchema.safeParse(
      withoutPaths(
        input,
        result.error.issues.flatMap((i) => (i.code === 'unrecognized_keys' ? i.keys.map((k) => [...i.path, k]) : [i.path])),
      ),
    );
    if (rest.success) problems.push(...semanticProblems(rest.data));
    return { config: null, problems };
  }
  const problems = semanticProblems(result.data);
  return { config: problems.length > 0 ? null : result.data, problems };
}

/** Suppressions whose expiry is already past at `nowMs`: not wrong, but doing nothing. */
export function expiredSuppressions(c: Config, nowMs: number): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  c.detector.suppressions.forEach((s, i) => {
    if (Date.parse(s.expires) <= nowMs) {
      out.push({ path: ['detector', 'suppressions', i, 'expires'], message: `expired at ${s.expires}: it no longer applies` });
    }
  });
  return out;
}

function withoutPaths(input: unknown, paths: PropertyKey[][]): unknown {
  const copy = structuredClone(input) as JsonObject;
  for (const path of paths) {
    let node: unknown = copy;
    for (const key of path.slice(0, -1))
      node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[String(key)] : undefined;
    const last = path[path.length - 1];
    if (typeof node === 'object' && node !== null && last !== undefined) delete (node as Record<string, unknown>)[String(last)];
  }
  return copy;
}

/** Rules that span several keys. */
function semanticProblems(c: Config): ConfigProblem[] {
  const d = c.detector;
  const problems: string[] = [];
  const located: ConfigProblem[] = [];
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
  d.overrides.forEach((o, i) => {
    if (o.minHistoryMs !== undefined && o.minHistoryMs > d.baselineWindowMs) {
      located.push({ path: ['detector', 'overrides', i, 'minHistoryMs'], message: 'must not exceed detector.baselineWindowMs' });
    }
  });
  return [...problems.map((message) => ({ path: [], message })), ...located];
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
