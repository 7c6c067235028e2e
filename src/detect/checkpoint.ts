import type { KeyRecord } from './state.ts';

/**
 * The engine's checkpoint shapes: the whole-state snapshot (JSON) and the incremental form the
 * changelog keeps (the engine-wide meta, then one encoded value per key and the dedupe entries).
 * A key's own encodings (`k3:`, `k2:`, JSON records) live in state.ts beside the slot layout they
 * mirror number for number: adding a field to a slot is then a change in one file.
 */

/** Version of the snapshot and of the meta; a checkpoint of another version is refused. */
export const SNAPSHOT_VERSION = 1;

export interface EngineMetrics {
  eventsProcessed: number;
  duplicates: number;
  lateEvents: number;
  keysCreated: number;
  keysEvicted: number;
  keysExpired: number;
  insightsStarted: number;
  insightsEnded: number;
}

/** Every counter at zero; also the start of a sum over several engines. */
export function emptyEngineMetrics(): EngineMetrics {
  return {
    eventsProcessed: 0,
    duplicates: 0,
    lateEvents: 0,
    keysCreated: 0,
    keysEvicted: 0,
    keysExpired: 0,
    insightsStarted: 0,
    insightsEnded: 0,
  };
}

export interface EngineSnapshot {
  version: number;
  maxEventTimeMs: number;
  watermarkMs: number;
  closedThroughMs: number;
  keys: KeyRecord[];
  seen: Array<[string, number]>;
  streamStartMs: Array<[string, number]>;
  metrics: EngineMetrics;
}

/** Engine-wide state of a checkpoint, besides the keys and the dedupe horizon. */
export interface EngineMeta {
  version: number;
  maxEventTimeMs: number | null;
  watermarkMs: number | null;
  closedThroughMs: number | null;
  streamStartMs: Array<[string, number]>;
  metrics: EngineMetrics;
}

/** What changed since the previous `drainChanges()`: enough to bring a checkpoint up to date. */
export interface EngineChanges {
  meta: EngineMeta;
  /** Encoded key state by key id; null when the key is gone (evicted or expired). */
  keys: Array<[string, string | null]>;
  /** Event ids first seen since the previous drain, with their event times. */
  seen: Array<[string, number]>;
}

/** Refuses a checkpoint of another version (`what`: snapshot or checkpoint, for the message). */
export function checkVersion(version: number, what: 'snapshot' | 'checkpoint'): void {
  if (version !== SNAPSHOT_VERSION) throw new Error(`unsupported engine ${what} version ${version}`);
}

/** A clock as the meta keeps it: null until it has a value (JSON has no infinities). */
export const finiteOrNull = (n: number): number | null => (Number.isFinite(n) ? n : null);

/** A clock back from the meta: −∞ when it had no value. */
export const orNegInf = (n: number | null | undefined): number => (n === null || n === undefined ? Number.NEGATIVE_INFINITY : n);

/**
 * The order to adopt restored keys in so the LRU order is by activity again (eviction and expiry
 * then pick the same keys): indices by last event time, ties in the changelog's order.
 */
export function activityOrder(lastEventMs: readonly number[]): number[] {
  // Array.prototype.sort is stable.
  return Array.from(lastEventMs.keys()).sort((a, b) => (lastEventMs[a] as number) - (lastEventMs[b] as number));
}
