import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { TUNING_FIELDS, type Tuning } from '../detect/overrides.ts';
import type { Config, DetectorConfig } from './schema.ts';

/**
 * The config a running detector follows, and its version. A source (today `run --watch` reading a
 * file; later the compacted config topic) validates a new config and calls `apply`; the runtime
 * hears of it and takes it at its next batch boundary. Only the tuning (`TUNING_FIELDS` of
 * `detector`: defaults, overrides, suppressions) changes live; anything else that differs is named
 * in the result as needing a restart and left as it was.
 */

export interface ConfigVersion {
  /** `<counter>-<first 12 hex of the content's sha256>`: what logs, and later Insights, carry. */
  id: string;
  counter: number;
  hash: string;
}

export interface ApplyResult {
  applied: boolean;
  /** Top-level and detector paths that differ outside the tuning: they need a restart. */
  needsRestart: string[];
}

export function contentHash(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function tuningOf(d: DetectorConfig): Tuning {
  const out = {} as Record<keyof Tuning, unknown>;
  for (const f of TUNING_FIELDS) out[f] = d[f];
  return out as Tuning;
}

export class LiveConfig {
  private current: Config;
  private currentVersion: ConfigVersion;
  private readonly listeners: Array<(config: Config, version: ConfigVersion) => void> = [];

  constructor(config: Config, hash = contentHash(JSON.stringify(config))) {
    this.current = config;
    this.currentVersion = { id: `1-${hash.slice(0, 12)}`, counter: 1, hash };
  }

  get config(): Config {
    return this.current;
  }

  get version(): ConfigVersion {
    return this.currentVersion;
  }

  /** The detector config with the current tuning: what a task created now is built with. */
  get detector(): DetectorConfig {
    return this.current.detector;
  }

  /** Takes `config`'s tuning (it must be validated already); a content hash equal to the current one changes nothing. */
  apply(config: Config, hash: string): ApplyResult {
    const needsRestart = restartPaths(this.current, config);
    if (hash === this.currentVersion.hash) return { applied: false, needsRestart };
    const counter = this.currentVersion.counter + 1;
    this.currentVersion = { id: `${counter}-${hash.slice(0, 12)}`, counter, hash };
    this.current = { ...this.current, detector: { ...this.current.detector, ...tuningOf(config.detector) } };
    for (const l of this.listeners) l(this.current, this.currentVersion);
    return { applied: true, needsRestart };
  }

  onChange(listener: (config: Config, version: ConfigVersion) => void): void {
    this.listeners.push(listener);
  }
}

function restartPaths(a: Config, b: Config): string[] {
  const out: string[] = [];
  for (const key of Object.keys(b) as Array<keyof Config>) {
    if (key === 'detector') continue;
    if (!isDeepStrictEqual(a[key], b[key])) out.push(key);
  }
  const tuning = new Set<string>(TUNING_FIELDS);
  for (const key of Object.keys(b.detector) as Array<keyof DetectorConfig>) {
    if (!tuning.has(key) && !isDeepStrictEqual(a.detector[key], b.detector[key])) out.push(`detector.${key}`);
  }
  return out;
}
