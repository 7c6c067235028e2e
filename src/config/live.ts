import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { FINDING_TUNING_FIELDS, findingTuningOf } from '../detect/finding-overrides.ts';
import { TUNING_FIELDS, type Tuning } from '../detect/overrides.ts';
import type { Config, DetectorConfig, FindingsConfig } from './schema.ts';

/**
 * The config a running detector follows, and its version. A source (`run --watch` reading a file,
 * or a member following the config topic, src/runtime/config-topic.ts) validates a new config and
 * calls `apply`; the runtime hears of it and takes it at its next batch boundary. Only the tuning
 * (`TUNING_FIELDS` of `detector`: defaults, overrides, suppressions; `FINDING_TUNING_FIELDS` of
 * `findings`: overrides, suppressions) changes live; anything else that differs is named in the
 * result as needing a restart and left as it was.
 */

export interface ConfigVersion {
  /**
   * What logs carry: `<counter>-<first 12 hex of the content's sha256>` for a file, and
   * `v<version>-<12 hex>` for a version of the config topic.
   */
  id: string;
  /** Configs applied in this process, from 1. */
  counter: number;
  hash: string;
  /** The config topic's version number (what Insights carry as trailwatch.configVersion); null for the file and environment. */
  version: number | null;
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
    this.currentVersion = { id: `1-${hash.slice(0, 12)}`, counter: 1, hash, version: null };
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

  /**
   * Takes `config`'s tuning (it must be validated already), as the config topic's `version` when it
   * is one; the content hash and version of the current config change nothing.
   */
  apply(config: Config, hash: string, version: number | null = null): ApplyResult {
    const needsRestart = restartPaths(this.current, config);
    if (hash === this.currentVersion.hash && version === this.currentVersion.version) return { applied: false, needsRestart };
    const counter = this.currentVersion.counter + 1;
    const id = version === null ? `${counter}-${hash.slice(0, 12)}` : `v${version}-${hash.slice(0, 12)}`;
    this.currentVersion = { id, counter, hash, version };
    this.current = {
      ...this.current,
      detector: { ...this.current.detector, ...tuningOf(config.detector) },
      findings: { ...this.current.findings, ...findingTuningOf(config.findings) },
    };
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
    if (key === 'detector' || key === 'findings') continue;
    if (!isDeepStrictEqual(a[key], b[key])) out.push(key);
  }
  const tuning = new Set<string>(TUNING_FIELDS);
  for (const key of Object.keys(b.detector) as Array<keyof DetectorConfig>) {
    if (!tuning.has(key) && !isDeepStrictEqual(a.detector[key], b.detector[key])) out.push(`detector.${key}`);
  }
  const findingTuning = new Set<string>(FINDING_TUNING_FIELDS);
  for (const key of Object.keys(b.findings) as Array<keyof FindingsConfig>) {
    if (!findingTuning.has(key) && !isDeepStrictEqual(a.findings[key], b.findings[key])) out.push(`findings.${key}`);
  }
  return out;
}
