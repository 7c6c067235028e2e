import { createHash, randomUUID } from 'node:crypto';
import { stringify } from 'yaml';
import { z } from 'zod';
import { FINDING_TUNING_FIELDS, type FindingTuning } from '../detect/finding-overrides.ts';
import { TUNING_FIELDS, type Tuning } from '../detect/overrides.ts';
import { ErrorCodes, TrailwatchError } from '../errors.ts';
import { type ConfigProblem, checkConfig, formatProblem } from './load.ts';
import type { Config } from './schema.ts';

/**
 * Versions of the detection tuning as records of the config topic (topics.config): one record per
 * version, keyed by the version number zero-padded (`0000000007`), so compaction keeps every
 * version and a reader sorts them by key. A record carries who applied it, when and why, the file
 * it came from with its sha256, and the document: the tunable detector settings (thresholds,
 * floors, direction, minHistoryMs, overrides, suppressions) and the findings' overrides and
 * suppressions, in full, so a version means the same on every member whatever its own file says.
 *
 * Two writers may race for one version number: the first record of a key in the log wins (every
 * reader sees one order), and the loser writes the winner's record again under that key, so that
 * compaction, which keeps the last record of a key, keeps the winner too (src/runtime/config-topic.ts).
 */

export const CONFIG_RECORD_FORMAT = 1;
/** Digits of a version key: ten, so that keys sort like numbers for as long as versions fit an int. */
const VERSION_KEY_DIGITS = 10;
/** The author of versions the feedback policy writes. */
export const FEEDBACK_POLICY_AUTHOR = 'feedback-policy';

/** What a version sets: the detector's and the findings' tuning, as a config file would (`config show` prints it as YAML). */
export interface ConfigDocument {
  detector: Tuning;
  /** Read as empty lists from a record written before versions carried findings tuning. */
  findings: FindingTuning;
}

export interface ConfigRecord {
  format: typeof CONFIG_RECORD_FORMAT;
  /** 1, 2, …: one more than the highest version before it. */
  version: number;
  /** ISO 8601, UTC. */
  appliedAt: string;
  author: string;
  message: string;
  /** The file's name as given to `config apply`, or `feedback-policy`. */
  source: string;
  /** Of the applied file's bytes; for a version without a file, of the document as `config show` prints it. */
  sha256: string;
  /** Unique per write: tells a writer its own record from a racing one with the same version. */
  writeId: string;
  document: ConfigDocument;
}

const recordSchema = z.object({
  format: z.literal(CONFIG_RECORD_FORMAT),
  version: z.number().int().positive(),
  appliedAt: z.string().min(1),
  author: z.string(),
  message: z.string(),
  source: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  writeId: z.string().min(1),
  document: z.object({
    detector: z.record(z.string(), z.unknown()),
    findings: z.record(z.string(), z.unknown()).default({ overrides: [], suppressions: [] }),
  }),
});

export function versionKey(version: number): string {
  return String(version).padStart(VERSION_KEY_DIGITS, '0');
}

/** The version a key names, or null for a key that is not a version's. */
export function versionOfKey(key: string): number | null {
  if (!/^\d+$/.test(key)) return null;
  const v = Number(key);
  return Number.isSafeInteger(v) && v > 0 ? v : null;
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The tunable part of a validated config: what a version records. */
export function documentOf(config: Config): ConfigDocument {
  const detector = {} as Record<keyof Tuning, unknown>;
  for (const f of TUNING_FIELDS) detector[f] = structuredClone(config.detector[f]);
  const findings = {} as Record<keyof FindingTuning, unknown>;
  for (const f of FINDING_TUNING_FIELDS) findings[f] = structuredClone(config.findings[f]);
  return { detector: detector as Tuning, findings: findings as FindingTuning };
}

/** The document as YAML: what `config show` prints, and a file `config apply` takes back. */
export function documentYaml(doc: ConfigDocument): string {
  return stringify(doc);
}

export function newConfigRecord(fields: Omit<ConfigRecord, 'format' | 'writeId'>): ConfigRecord {
  return { format: CONFIG_RECORD_FORMAT, ...fields, writeId: randomUUID() };
}

export function encodeConfigRecord(record: ConfigRecord): string {
  return JSON.stringify(record);
}

/** A config-topic value as a record; a value that is not one is a TW_DESERIALIZE error naming the key. */
export function decodeConfigRecord(key: string, value: Buffer | string): ConfigRecord {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString());
  } catch (err) {
    throw new TrailwatchError(ErrorCodes.DESERIALIZE, `config record ${key} is not JSON: ${(err as Error).message}`, { fault: 'user' });
  }
  const result = recordSchema.safeParse(parsed);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.join('.') || '(record)'}: ${i.message}`);
    throw new TrailwatchError(ErrorCodes.DESERIALIZE, `config record ${key} is not a config version: ${problems.join('; ')}`, {
      fault: 'user',
    });
  }
  const record = result.data as ConfigRecord;
  if (versionKey(record.version) !== key) {
    throw new TrailwatchError(ErrorCodes.DESERIALIZE, `config record ${key} says it is version ${record.version}`, { fault: 'user' });
  }
  return record;
}

/**
 * `base` with a version's tuning, validated as a whole (the document's settings against the
 * member's other settings, e.g. minHistoryMs against its baselineWindowMs): the config, or every
 * problem.
 */
export function configWithDocument(base: Config, doc: ConfigDocument): { config: Config | null; problems: string[] } {
  const input = { ...base, detector: { ...base.detector, ...doc.detector }, findings: { ...base.findings, ...doc.findings } };
  const { config, problems } = checkConfig(input);
  if (!config) return { config: null, problems: problems.map((p: ConfigProblem) => formatProblem(p)) };
  // Secrets were resolved in `base` already; checkConfig keeps them as they are.
  return { config, problems: [] };
}

/**
 * The config topic folded: each version's winning record (the first of its key in the log), the
 * records that lost a race for a version, and the values that are not records at all.
 */
export class ConfigHistory {
  private readonly byVersion = new Map<number, ConfigRecord>();
  /** Records that came after another of the same version: they lost a race (and are not versions). */
  readonly superseded: ConfigRecord[] = [];
  /** Keys whose value is not a config record (written by hand, or by a newer trailwatch), with why. */
  readonly invalid: Array<{ key: string; problem: string }> = [];

  /** One record of the topic, in log order; keys that are not versions (and tombstones) are skipped. */
  add(key: string | null, value: Buffer | string | null): void {
    if (key === null || value === null || versionOfKey(key) === null) return;
    let record: ConfigRecord;
    try {
      record = decodeConfigRecord(key, value);
    } catch (err) {
      this.invalid.push({ key, problem: (err as Error).message });
      return;
    }
    const known = this.byVersion.get(record.version);
    if (known === undefined) this.byVersion.set(record.version, record);
    else if (known.writeId !== record.writeId) this.superseded.push(record);
  }

  get(version: number): ConfigRecord | undefined {
    return this.byVersion.get(version);
  }

  /** The highest version, or null when there is none. */
  latest(): ConfigRecord | null {
    let best: ConfigRecord | null = null;
    for (const r of this.byVersion.values()) if (best === null || r.version > best.version) best = r;
    return best;
  }

  /** What the next write should be: one more than the highest version (also above every lost race). */
  nextVersion(): number {
    let max = 0;
    for (const v of this.byVersion.keys()) max = Math.max(max, v);
    for (const r of this.superseded) max = Math.max(max, r.version);
    return max + 1;
  }

  /** Every version, newest first. */
  list(): ConfigRecord[] {
    return [...this.byVersion.values()].sort((a, b) => b.version - a.version);
  }

  get size(): number {
    return this.byVersion.size;
  }
}
