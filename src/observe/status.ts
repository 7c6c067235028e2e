import { createHash } from 'node:crypto';
import pkg from '../../package.json' with { type: 'json' };
import type { Config } from '../config/schema.ts';
import type { PartitionState } from './health.ts';

/**
 * A detector member's status record: what `trailwatch status` shows. Each member publishes its
 * own every observe.refreshMs to topics.status (compacted, keyed `<groupId>/<memberId>`) and a
 * tombstone when it stops cleanly; a record older than STALE_AFTER_INTERVALS intervals belongs to
 * a member that stopped without one, or is stuck.
 */
export interface MemberStatus {
  v: 1;
  groupId: string;
  memberId: string;
  host: string;
  pid: number;
  version: string;
  /** Hash of the detection config (detector, rules, findings sections). */
  configHash: string;
  /** The applied config's version, once configs are versioned; null until then. */
  configVersion: string | null;
  startedAtMs: number;
  publishedAtMs: number;
  intervalMs: number;
  ready: boolean;
  /** Why not ready (empty when ready). */
  reasons: string[];
  partitions: PartitionState[];
  totals: {
    /** Null while any partition's lag is unmeasured. */
    lag: number | null;
    keys: number;
    openInsights: number;
    eventsIn: number;
    lateEvents: number;
    deadLetters: number;
    insights: number;
    findings: number;
  };
}

export const STATUS_RECORD_VERSION = 1;
export const STALE_AFTER_INTERVALS = 3;
export const TRAILWATCH_VERSION: string = pkg.version;

export function statusKey(groupId: string, memberId: string): string {
  return `${groupId}/${memberId}`;
}

/** JSON with object keys sorted, so equal configs hash alike whatever order they were written in. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * The first 12 hex digits of SHA-256 over what decides detection (detector, rules, findings):
 * two members with the same hash judge alike; connection settings and secrets are not part of it.
 */
export function configHash(config: Config): string {
  const detection = { detector: config.detector, rules: config.rules, findings: config.findings };
  return createHash('sha256').update(canonicalJson(detection)).digest('hex').slice(0, 12);
}

export function encodeStatus(status: MemberStatus): string {
  return JSON.stringify(status);
}

/** A status record, or null for a value that is not one (another version, another writer). */
export function decodeStatus(value: Buffer | string | null): MemberStatus | null {
  if (value === null) return null;
  try {
    const s = JSON.parse(value.toString()) as Partial<MemberStatus>;
    if (s.v !== STATUS_RECORD_VERSION || typeof s.memberId !== 'string' || typeof s.groupId !== 'string' || !Array.isArray(s.partitions)) {
      return null;
    }
    return s as MemberStatus;
  } catch {
    return null;
  }
}

export function isStale(s: MemberStatus, nowMs: number): boolean {
  return nowMs - s.publishedAtMs > STALE_AFTER_INTERVALS * s.intervalMs;
}

/** `e0-2 a0,2`: the events partitions (e) and the repartition topic's (a), runs collapsed. */
export function partitionList(partitions: readonly PartitionState[]): string {
  const part = (stage: PartitionState['stage'], letter: string): string => {
    const ps = partitions
      .filter((p) => p.stage === stage)
      .map((p) => p.partition)
      .sort((a, b) => a - b);
    if (ps.length === 0) return '';
    const runs: string[] = [];
    for (let i = 0; i < ps.length; ) {
      let j = i;
      while (j + 1 < ps.length && (ps[j + 1] as number) === (ps[j] as number) + 1) j++;
      runs.push(j - i >= 2 ? `${ps[i]}-${ps[j]}` : ps.slice(i, j + 1).join(','));
      i = j + 1;
    }
    return `${letter}${runs.join(',')}`;
  };
  return [part('principal', 'e'), part('action', 'a')].filter(Boolean).join(' ') || '-';
}

function ago(ms: number): string {
  if (ms < 60_000) return `${Math.max(0, Math.round(ms / 1000))}s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)}m`;
  return `${Math.round(ms / 3_600_000)}h`;
}

/** The members as an aligned text table, one row each. */
export function statusTable(members: readonly MemberStatus[], nowMs: number): string {
  const header = ['GROUP', 'MEMBER', 'STATE', 'PARTITIONS', 'LAG', 'KEYS', 'OPEN', 'CONFIG', 'SEEN'];
  const rows = members.map((m) => [
    m.groupId,
    m.memberId,
    isStale(m, nowMs) ? 'stale' : m.ready ? 'ready' : 'not ready',
    partitionList(m.partitions),
    m.totals.lag === null ? '?' : String(m.totals.lag),
    String(m.totals.keys),
    String(m.totals.openInsights),
    m.configVersion ?? m.configHash,
    `${ago(nowMs - m.publishedAtMs)} ago`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] as number))
      .join('  ')
      .trimEnd();
  const notes = members
    .filter((m) => !m.ready && !isStale(m, nowMs) && m.reasons.length > 0)
    .map((m) => `  ${m.memberId}: ${m.reasons.slice(0, 3).join('; ')}${m.reasons.length > 3 ? `; … ${m.reasons.length - 3} more` : ''}`);
  return [line(header), ...rows.map(line), ...(notes.length > 0 ? ['', 'not ready:', ...notes] : [])].join('\n');
}
