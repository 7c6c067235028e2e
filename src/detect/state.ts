import type { AttributionAttribute, InsightScope, InsightType } from '../contracts/types.ts';
import type { InsightSubject } from '../emit/insight.ts';
import type { Direction, ValueModel } from './baseline/score.ts';
import type { KeySettings } from './overrides.ts';
import { keyId } from './signals.ts';
import { type HeavyHitters, newHeavyHitters } from './sketch.ts';

export { keyId } from './signals.ts';

export type Contributors = Record<AttributionAttribute, HeavyHitters>;

/** Empty contributor sketches of `capacity` values each. */
export function newContributors(capacity: number): Contributors {
  return {
    userIdentityArn: newHeavyHitters(capacity),
    userAgent: newHeavyHitters(capacity),
    errorCode: newHeavyHitters(capacity),
  };
}

export interface BucketAcc {
  count: number;
  contributors: Contributors;
}

/** A bucket not yet closed, as a key holds it: its counts and where it starts. */
export interface OpenBucket extends BucketAcc {
  startMs: number;
}

export interface Streak {
  startMs: number;
  /** End (exclusive) of the last anomalous bucket. */
  lastEndMs: number;
  buckets: number;
  count: number;
  peakScore: number;
  /** Highest bucket count of the anomaly: remembered as a burst once it ends. */
  peakCount: number;
  startScore: number;
  contributors: Contributors;
  /** Baseline as it stood when the streak began: the anomaly must not report itself as normal. */
  baselineMean: number;
  baselineMinutes: number;
  belowStreak: number;
  started: boolean;
  /** Which way the key left its expectation (absent in older checkpoints: up). */
  direction?: 'up' | 'down';
  /** Its Start was suppressed (detector.suppressions), so its End is too; absent when not. */
  suppressed?: true;
  /** Attribution baselines as they stood at Start, so the End reports the same (absent in older checkpoints). */
  baselineTop?: Partial<Record<AttributionAttribute, Array<{ value: string; count: number }>>>;
}

/**
 * Where a key's state lives. A million keys must fit in a process (≤ 1 KiB each), so the numbers
 * of every key (baseline, burst memory, hourly profile, baseline contributor counts) sit in a few
 * large Float64Arrays, one fixed-size slot per key, instead of in objects with boxed doubles and
 * growable arrays. A `KeyState` is a small object naming its key and pointing at its slot.
 *
 * Checkpoints do not see the pool: `toRecord`/`fromRecord` convert to and from `KeyRecord`, plain
 * JSON-safe data in the shape checkpoints have always had, so old checkpoints still load.
 */

/** Slots per chunk of the pool: chunks are allocated as keys arrive, never copied to grow. */
const CHUNK_SLOTS = 4096;

/** Offsets in a slot. */
export const F = {
  lastFoldedMs: 0,
  observed: 1,
  mean: 2,
  dispersion: 3,
  hourlyDispersion: 4,
  burst: 5,
  dayPeak: 6,
  dayPeakMinute: 7,
  dayPeakNear: 8,
  prevPeakMinute: 9,
  lastEventMs: 10,
  nearDay: 11,
  /** The sustained-shift runs (baseline/cusum.ts), upwards then downwards: evidence, start, sum, buckets. */
  cusumUp: 12,
  cusumDown: 17,
  /** Run memory: the highest average of a past sustained run upwards, fading like the burst memory. */
  runPeak: 22,
} as const;
const FIXED = 23;
/** Fixed numbers of a slot in the k2 changelog format (before the dispersion and the sustained-shift runs). */
const FIXED_K2 = 12;
/** Numbers of one sustained-shift run in a slot: evidence, start, sum, buckets, peak. */
export const CUSUM_FIELDS = 5;

/**
 * Baseline contributor sketches kept per key, by attribute; a sketch's slot area is its scale, then
 * its counts. Who called is last: a principal's own key has no use for it, so its slots stop before.
 */
export const SKETCH_ATTRIBUTES = ['userAgent', 'errorCode', 'userIdentityArn'] as const satisfies AttributionAttribute[];
export type SketchAttribute = (typeof SKETCH_ATTRIBUTES)[number];

/** A key's checkpoint form (also its snapshot form): plain data. */
export interface KeyRecord extends InsightSubject {
  id: string;
  lastFoldedMs: number;
  observed: number;
  mean: number;
  /** Pearson dispersion around the mean (counts) or residual variance (gauge); see baseline/dispersion.ts. */
  dispersion?: number;
  hourlyDispersion?: number;
  /** Before the dispersion (k2 and older JSON): EWMA of squared residuals around the mean and the hourly profile. */
  variance?: number;
  hourlyVariance?: number;
  /** The sustained-shift runs, up then down ([evidence, start, sum, buckets, peak] each), then the run memory; absent in older checkpoints. */
  cusum?: number[];
  hourly: number[] | null;
  burst: number;
  dayPeak: number;
  dayPeakMinute: number;
  dayPeakNear: boolean;
  prevPeakMinute: number;
  /** UTC day number of the last day whose peak nearly fired, −1 when none (absent in older checkpoints). */
  nearDay?: number;
  baselineContributors: Partial<Record<AttributionAttribute, HeavyHitters>> | null;
  pending: Record<string, BucketAcc> | null;
  streak: Streak | null;
  lastEventMs: number;
  forward?: true;
}

/** Fixed-stride slots in chunked Float64Arrays, with a free list. */
export class SlotPool {
  readonly stride: number;
  readonly capacity: number;
  readonly hourlyAt = FIXED;
  readonly hourly: boolean;
  private readonly sketchesAt: number;
  private readonly chunks: Float64Array[] = [];
  private readonly free: number[] = [];
  private next = 0;

  /**
   * `capacity`: counts kept per baseline sketch; `sketches`: how many of SKETCH_ATTRIBUTES a slot
   * has room for; `hourly`: whether slots carry a 24-hour profile. Pools that differ only in
   * `sketches` lay slots out alike, so one BaselineSketches serves them all.
   */
  constructor(capacity: number, sketches: number, hourly: boolean) {
    this.capacity = capacity;
    this.hourly = hourly;
    this.sketchesAt = FIXED + (hourly ? 24 : 0);
    this.stride = this.sketchesAt + sketches * (capacity + 1);
  }

  /** A zeroed slot: its chunk and its offset in the chunk. */
  alloc(): { slot: number; f: Float64Array; o: number } {
    const slot = this.free.pop() ?? this.next++;
    const c = Math.floor(slot / CHUNK_SLOTS);
    while (this.chunks.length <= c) this.chunks.push(new Float64Array(CHUNK_SLOTS * this.stride));
    const f = this.chunks[c] as Float64Array;
    const o = (slot % CHUNK_SLOTS) * this.stride;
    f.fill(0, o, o + this.stride);
    return { slot, f, o };
  }

  release(slot: number): void {
    this.free.push(slot);
  }

  /** Where a sketch's scale sits in a slot; its counts follow. */
  sketchAt(attr: number): number {
    return this.sketchesAt + attr * (this.capacity + 1);
  }
}

/** Everything kept per key: its identity, a slot of numbers, and the few things that are not numbers. */
export class KeyState {
  readonly id: string;
  readonly scope: InsightScope;
  readonly insightType: InsightType;
  readonly accountId: string;
  region: string;
  readonly service: string;
  readonly action: string;
  readonly principal: string | null;
  readonly errorCode: string | null;
  /** Only aggregated per bucket and forwarded as a BucketPartial (to the stage that judges it), never judged here. */
  readonly forward: boolean;
  readonly slot: number;
  /** The pool chunk holding this key's slot, and the slot's offset in it. */
  readonly f: Float64Array;
  readonly o: number;
  /** Values of each baseline contributor sketch (by SKETCH_ATTRIBUTES index); null until first used. Counts are in the slot. */
  sketches: [string[] | null, string[] | null, string[] | null];
  /** Buckets not yet closed by the watermark, in the order they opened; null when none. */
  pending: OpenBucket[] | null;
  /** An anomalous streak: a candidate before Start, the open Insight after it. */
  streak: Streak | null;
  /** Neighbours in the engine's LRU order (least recently active first). */
  older: KeyState | null;
  newer: KeyState | null;
  /** Evicted or expired: whoever still holds it must look the id up again. */
  dropped: boolean;
  /** Which way the key is watched (detector.direction and overrides; resolved, not stored). */
  direction: Direction;
  /** How its values are modelled (its signal type's, or the engine's valueModel; resolved, not stored). */
  model: ValueModel;
  /** Its settings (detector-wide, override, suppressions; resolved, not stored), and the tuning generation they were resolved in. */
  settings!: KeySettings;
  generation: number;

  constructor(
    identity: Pick<KeyRecord, 'id' | 'scope' | 'insightType' | 'accountId' | 'region' | 'service' | 'action' | 'principal' | 'errorCode'>,
    forward: boolean,
    place: { slot: number; f: Float64Array; o: number },
  ) {
    this.id = identity.id;
    this.scope = identity.scope;
    this.insightType = identity.insightType;
    this.accountId = identity.accountId;
    this.region = identity.region;
    this.service = identity.service;
    this.action = identity.action;
    this.principal = identity.principal;
    this.errorCode = identity.errorCode;
    this.forward = forward;
    this.slot = place.slot;
    this.f = place.f;
    this.o = place.o;
    this.sketches = [null, null, null];
    this.pending = null;
    this.streak = null;
    this.older = null;
    this.newer = null;
    this.dropped = false;
    this.direction = 'up';
    this.model = 'counts';
    this.generation = -1;
  }

  get lastFoldedMs(): number {
    return this.f[this.o + F.lastFoldedMs] as number;
  }
  set lastFoldedMs(v: number) {
    this.f[this.o + F.lastFoldedMs] = v;
  }
  /** Buckets of history in the baseline (capped at the window); −1 before the first bucket is judged. */
  get observed(): number {
    return this.f[this.o + F.observed] as number;
  }
  set observed(v: number) {
    this.f[this.o + F.observed] = v;
  }
  get mean(): number {
    return this.f[this.o + F.mean] as number;
  }
  set mean(v: number) {
    this.f[this.o + F.mean] = v;
  }
  /** Dispersion of the values around the mean (baseline/dispersion.ts). */
  get dispersion(): number {
    return this.f[this.o + F.dispersion] as number;
  }
  set dispersion(v: number) {
    this.f[this.o + F.dispersion] = v;
  }
  /** Dispersion around the hourly profile, learned from the start so it is ready when the profile is. */
  get hourlyDispersion(): number {
    return this.f[this.o + F.hourlyDispersion] as number;
  }
  set hourlyDispersion(v: number) {
    this.f[this.o + F.hourlyDispersion] = v;
  }
  /** Burst memory: the highest raw count of a bucket, fading with a one-week half-life. */
  get burst(): number {
    return this.f[this.o + F.burst] as number;
  }
  set burst(v: number) {
    this.f[this.o + F.burst] = v;
  }
  /** Today's highest suspicious-but-quiet count, and its minute of the day. */
  get dayPeak(): number {
    return this.f[this.o + F.dayPeak] as number;
  }
  set dayPeak(v: number) {
    this.f[this.o + F.dayPeak] = v;
  }
  get dayPeakMinute(): number {
    return this.f[this.o + F.dayPeakMinute] as number;
  }
  set dayPeakMinute(v: number) {
    this.f[this.o + F.dayPeakMinute] = v;
  }
  /** Whether today's peak came close to firing. */
  get dayPeakNear(): boolean {
    return this.f[this.o + F.dayPeakNear] === 1;
  }
  set dayPeakNear(v: boolean) {
    this.f[this.o + F.dayPeakNear] = v ? 1 : 0;
  }
  /** Yesterday's peak minute, −1 when there was none. */
  get prevPeakMinute(): number {
    return this.f[this.o + F.prevPeakMinute] as number;
  }
  set prevPeakMinute(v: number) {
    this.f[this.o + F.prevPeakMinute] = v;
  }
  /** UTC day number (days since the epoch) of the last day whose peak nearly fired; −1 when none. */
  get nearDay(): number {
    return this.f[this.o + F.nearDay] as number;
  }
  set nearDay(v: number) {
    this.f[this.o + F.nearDay] = v;
  }
  /** Run memory: the highest average of a past sustained run upwards, fading like the burst memory. */
  get runPeak(): number {
    return this.f[this.o + F.runPeak] as number;
  }
  set runPeak(v: number) {
    this.f[this.o + F.runPeak] = v;
  }
  get lastEventMs(): number {
    return this.f[this.o + F.lastEventMs] as number;
  }
  set lastEventMs(v: number) {
    this.f[this.o + F.lastEventMs] = v;
  }
}

const RESCALE_BELOW = 1e-100;

/**
 * A key's baseline contributor sketches: Space-Saving (as in sketch.ts, same arithmetic, so
 * results do not depend on where the state lives) with the values in a small exact-size array on
 * the key and the scale and counts in its slot.
 */
export class BaselineSketches {
  private readonly pool: SlotPool;
  private readonly intern: (value: string) => string;

  constructor(pool: SlotPool, intern: (value: string) => string) {
    this.pool = pool;
    this.intern = intern;
  }

  has(k: KeyState, attr: number): boolean {
    return k.sketches[attr] !== null;
  }

  create(k: KeyState, attr: number): void {
    k.sketches[attr] = [];
    k.f[k.o + this.pool.sketchAt(attr)] = 1;
  }

  add(k: KeyState, attr: number, value: string, weight: number): void {
    const values = k.sketches[attr] as string[];
    const at = k.o + this.pool.sketchAt(attr);
    const f = k.f;
    const stored = weight / (f[at] as number);
    const i = values.indexOf(value);
    if (i >= 0) {
      f[at + 1 + i] = (f[at + 1 + i] as number) + stored;
      return;
    }
    if (values.length < this.pool.capacity) {
      f[at + 1 + values.length] = stored;
      // A new exact-size array: a pushed-to (or spread) one reserves room for 17 values.
      const next = new Array<string>(values.length + 1);
      for (let j = 0; j < values.length; j++) next[j] = values[j] as string;
      next[values.length] = this.intern(value);
      k.sketches[attr] = next;
      return;
    }
    let min = 0;
    for (let j = 1; j < values.length; j++) if ((f[at + 1 + j] as number) < (f[at + 1 + min] as number)) min = j;
    values[min] = this.intern(value);
    f[at + 1 + min] = (f[at + 1 + min] as number) + stored;
  }

  merge(k: KeyState, attr: number, from: HeavyHitters, factor: number): void {
    for (let i = 0; i < from.values.length; i++)
      this.add(k, attr, from.values[i] as string, (from.counts[i] as number) * from.scale * factor);
  }

  scale(k: KeyState, attr: number, factor: number): void {
    const values = k.sketches[attr] as string[];
    const at = k.o + this.pool.sketchAt(attr);
    const f = k.f;
    f[at] = (f[at] as number) * factor;
    const scale = f[at] as number;
    if (scale < RESCALE_BELOW) {
      for (let i = 0; i < values.length; i++) f[at + 1 + i] = (f[at + 1 + i] as number) * scale;
      f[at] = 1;
    }
  }

  top(k: KeyState, attr: number, n: number): Array<{ value: string; count: number }> {
    const values = k.sketches[attr];
    if (!values) return [];
    const at = k.o + this.pool.sketchAt(attr);
    const scale = k.f[at] as number;
    return values
      .map((value, i) => ({ value, count: (k.f[at + 1 + i] as number) * scale }))
      .sort((a, b) => b.count - a.count || (a.value < b.value ? -1 : a.value > b.value ? 1 : 0))
      .slice(0, n);
  }

  /** As a plain HeavyHitters (for checkpoints). */
  toPlain(k: KeyState, attr: number, capacity: number): HeavyHitters | null {
    const values = k.sketches[attr];
    if (!values) return null;
    const at = k.o + this.pool.sketchAt(attr);
    return { capacity, values: [...values], counts: values.map((_, i) => k.f[at + 1 + i] as number), scale: k.f[at] as number };
  }

  fromPlain(k: KeyState, attr: number, sketch: HeavyHitters): void {
    const n = Math.min(sketch.values.length, this.pool.capacity);
    const at = k.o + this.pool.sketchAt(attr);
    k.sketches[attr] = sketch.values.slice(0, n).map(this.intern);
    k.f[at] = sketch.scale;
    for (let i = 0; i < n; i++) k.f[at + 1 + i] = sketch.counts[i] as number;
  }
}

/** A key's hourly profile value for an hour of the day. */
export function hourlyOf(pool: SlotPool, k: KeyState, hour: number): number {
  return k.f[k.o + pool.hourlyAt + hour] as number;
}

export function setHourly(pool: SlotPool, k: KeyState, hour: number, value: number): void {
  k.f[k.o + pool.hourlyAt + hour] = value;
}

const NUMBERS = ['lastFoldedMs', 'observed', 'mean', 'burst', 'dayPeak', 'dayPeakMinute', 'prevPeakMinute', 'lastEventMs'] as const;

/** Mean floor used to turn a legacy variance into a dispersion (events per bucket). */
const LEGACY_MEAN_FLOOR = 0.05;

/** The checkpoint form of a key. `hourly`: whether the engine keeps hourly profiles. */
export function toRecord(k: KeyState, pool: SlotPool, sketches: BaselineSketches, hourly: boolean, topN: number): KeyRecord {
  let baselineContributors: KeyRecord['baselineContributors'] = null;
  SKETCH_ATTRIBUTES.forEach((attr, i) => {
    const plain = sketches.toPlain(k, i, topN);
    if (!plain) return;
    baselineContributors ??= {};
    baselineContributors[attr] = plain;
  });
  const record: KeyRecord = {
    id: k.id,
    ...subjectOf(k),
    lastFoldedMs: k.lastFoldedMs,
    observed: k.observed,
    mean: k.mean,
    dispersion: k.dispersion,
    hourlyDispersion: k.hourlyDispersion,
    cusum: Array.from({ length: 2 * CUSUM_FIELDS + 1 }, (_, i) => k.f[k.o + F.cusumUp + i] as number),
    hourly: hourly && !k.forward ? Array.from({ length: 24 }, (_, h) => hourlyOf(pool, k, h)) : null,
    burst: k.burst,
    dayPeak: k.dayPeak,
    dayPeakMinute: k.dayPeakMinute,
    dayPeakNear: k.dayPeakNear,
    prevPeakMinute: k.prevPeakMinute,
    nearDay: k.nearDay,
    baselineContributors,
    pending: pendingRecord(k.pending),
    streak: k.streak,
    lastEventMs: k.lastEventMs,
  };
  if (k.forward) record.forward = true;
  return record;
}

/** A key back from its checkpoint form, in a fresh slot. The record's pending and streak are taken over, not copied. */
export function fromRecord(r: KeyRecord, pool: SlotPool, sketches: BaselineSketches): KeyState {
  const k = new KeyState(r, r.forward === true, pool.alloc());
  for (const name of NUMBERS) k[name] = r[name];
  if (r.dispersion !== undefined) {
    k.dispersion = r.dispersion;
    k.hourlyDispersion = r.hourlyDispersion ?? r.dispersion;
  } else {
    // A checkpoint from before the dispersion kept residual variances: as a dispersion, per unit of mean.
    const scale = Math.max(r.mean, LEGACY_MEAN_FLOOR);
    k.dispersion = (r.variance ?? 0) / scale;
    k.hourlyDispersion = (r.hourlyVariance ?? 0) / scale;
  }
  for (let i = 0; r.cusum && i < Math.min(2 * CUSUM_FIELDS + 1, r.cusum.length); i++) k.f[k.o + F.cusumUp + i] = r.cusum[i] as number;
  k.dayPeakNear = r.dayPeakNear;
  k.nearDay = r.nearDay ?? -1;
  // A record from an engine with another seasonality setting: the profile is kept only where a slot has room.
  for (let h = 0; pool.hourly && r.hourly && h < Math.min(24, r.hourly.length); h++) setHourly(pool, k, h, r.hourly[h] as number);
  SKETCH_ATTRIBUTES.forEach((attr, i) => {
    const plain = r.baselineContributors?.[attr];
    // A principal's slot has no room for who called (it is always the principal).
    if (plain && !(attr === 'userIdentityArn' && r.scope === 'principalAction')) sketches.fromPlain(k, i, plain);
  });
  k.pending = openBuckets(r.pending);
  k.streak = r.streak;
  return k;
}

/** A key's open buckets in their checkpoint form: by bucket start, in the order they opened. */
function pendingRecord(pending: OpenBucket[] | null): Record<string, BucketAcc> | null {
  if (pending === null) return null;
  const record: Record<string, BucketAcc> = {};
  for (const p of pending) record[String(p.startMs)] = { count: p.count, contributors: p.contributors };
  return record;
}

function openBuckets(record: Record<string, BucketAcc> | null): OpenBucket[] | null {
  if (record === null) return null;
  const pending: OpenBucket[] = [];
  for (const [start, acc] of Object.entries(record))
    pending.push({ startMs: Number(start), count: acc.count, contributors: acc.contributors });
  return pending.length === 0 ? null : pending;
}

/** What a key is about, as plain data (the key's fields are accessors on its slot). */
export function subjectOf(k: InsightSubject): InsightSubject {
  return {
    scope: k.scope,
    insightType: k.insightType,
    accountId: k.accountId,
    region: k.region,
    service: k.service,
    action: k.action,
    principal: k.principal,
    errorCode: k.errorCode,
  };
}

/**
 * A key's changelog value. Written for every key a batch changed, so it is on the hot path: the
 * numbers go out as they are, little-endian doubles in base64 (a copy and a table lookup per byte,
 * where JSON prints every double in shortest form and walks objects property by property), and
 * the strings and small counts as one flat JSON array:
 *
 *   k3:<base64 doubles>:<JSON [flags, capacity, n0, n1, n2, buckets, (capacity, n) × 3 per bucket,
 *                              scope, insightType, accountId, region, service, action, principal,
 *                              errorCode, sketch values…, bucket contributor values…, streak?]>
 *
 * flags: 1 the key has an hourly profile, 2 it is forwarded, 4 a streak follows. n0…n2: values of
 * each baseline sketch (SKETCH_ATTRIBUTES order), −1 when it is not in use. The doubles: the
 * slot's fixed numbers (F order), the hourly profile, then per baseline sketch in use its scale and
 * counts, then per pending bucket its start, count and, per contributor attribute (ATTRIBUTES
 * order), its scale and counts. The id is not written: keyId rebuilds it from the identity.
 *
 * Values written before this format still decode: `k2:` (12 fixed numbers, residual variances where
 * the dispersions are now, no sustained-shift runs) and JSON of a KeyRecord (they begin with `{`).
 */
const KEY_FORMAT = 'k3:';
/** The format before the dispersion and the sustained-shift runs: FIXED_K2 numbers, variances where dispersions are now. */
const KEY_FORMAT_K2 = 'k2:';
const FLAG_HOURLY = 1;
const FLAG_FORWARD = 2;
const FLAG_STREAK = 4;
const BUCKET_ATTRIBUTES = ['userIdentityArn', 'userAgent', 'errorCode'] as const satisfies AttributionAttribute[];
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** Reused by every encoding (one at a time: encoding is synchronous); grown when a key needs more. */
let scratch = new Float64Array(1024);
let scratchBytes = Buffer.from(scratch.buffer);

function room(n: number): void {
  if (n <= scratch.length) return;
  const next = new Float64Array(Math.max(n, 2 * scratch.length));
  next.set(scratch);
  scratch = next;
  scratchBytes = Buffer.from(scratch.buffer);
}

/** Copies a bucket sketch's scale and counts to the scratch doubles from `n`; returns the next free index. */
function putCounts(hh: HeavyHitters, n: number): number {
  scratch[n++] = hh.scale;
  const counts = hh.counts;
  for (let i = 0; i < counts.length; i++) scratch[n++] = counts[i] as number;
  return n;
}

function putValues(values: string[], parts: Array<string | number | null | Streak>): void {
  for (let i = 0; i < values.length; i++) parts.push(values[i] as string);
}

/** The changelog value of a key (see KEY_FORMAT); `pool` is the key's own. */
export function encodeKey(k: KeyState, pool: SlotPool): string {
  const f = k.f;
  const o = k.o;
  const hourly = pool.hourly && !k.forward;
  const [s0, s1, s2] = k.sketches;
  const pending = k.pending;
  const parts: Array<string | number | null | Streak> = [
    (hourly ? FLAG_HOURLY : 0) | (k.forward ? FLAG_FORWARD : 0) | (k.streak ? FLAG_STREAK : 0),
    pool.capacity,
    s0 === null ? -1 : s0.length,
    s1 === null ? -1 : s1.length,
    s2 === null ? -1 : s2.length,
    pending === null ? 0 : pending.length,
  ];
  let n = 0;
  room(FIXED + 24 + SKETCH_ATTRIBUTES.length * (pool.capacity + 1));
  for (let i = 0; i < FIXED; i++) scratch[n++] = f[o + i] as number;
  if (hourly) for (let h = 0; h < 24; h++) scratch[n++] = f[o + pool.hourlyAt + h] as number;
  for (let s = 0; s < SKETCH_ATTRIBUTES.length; s++) {
    const values = k.sketches[s];
    if (!values) continue;
    const at = o + pool.sketchAt(s);
    for (let i = 0; i <= values.length; i++) scratch[n++] = f[at + i] as number;
  }
  if (pending !== null) {
    for (let b = 0; b < pending.length; b++) {
      // In BUCKET_ATTRIBUTES order, spelled out: a property read by name is cheaper than by key.
      const { userIdentityArn, userAgent, errorCode } = (pending[b] as OpenBucket).contributors;
      room(n + 5 + userIdentityArn.counts.length + userAgent.counts.length + errorCode.counts.length);
      scratch[n++] = (pending[b] as OpenBucket).startMs;
      scratch[n++] = (pending[b] as OpenBucket).count;
      n = putCounts(userIdentityArn, n);
      n = putCounts(userAgent, n);
      n = putCounts(errorCode, n);
      parts.push(
        userIdentityArn.capacity,
        userIdentityArn.values.length,
        userAgent.capacity,
        userAgent.values.length,
        errorCode.capacity,
        errorCode.values.length,
      );
    }
  }
  parts.push(k.scope, k.insightType, k.accountId, k.region, k.service, k.action, k.principal, k.errorCode);
  if (s0) putValues(s0, parts);
  if (s1) putValues(s1, parts);
  if (s2) putValues(s2, parts);
  if (pending !== null) {
    for (let b = 0; b < pending.length; b++) {
      const { userIdentityArn, userAgent, errorCode } = (pending[b] as OpenBucket).contributors;
      putValues(userIdentityArn.values, parts);
      putValues(userAgent.values, parts);
      putValues(errorCode.values, parts);
    }
  }
  if (k.streak) parts.push(k.streak);
  let numbers: string;
  if (LITTLE_ENDIAN) numbers = scratchBytes.toString('base64', 0, n * 8);
  else
    numbers = Buffer.from(scratchBytes.subarray(0, n * 8))
      .swap64()
      .toString('base64');
  return `${KEY_FORMAT}${numbers}:${JSON.stringify(parts)}`;
}

/** `size` doubles from the scratch at `n` on, as a plain array. */
function takeDoubles(n: number, size: number): number[] {
  const out = new Array<number>(size);
  for (let i = 0; i < size; i++) out[i] = scratch[n + i] as number;
  return out;
}

/** A changelog value back as the key's plain record: this format or the JSON before it. */
export function decodeKey(encoded: string): KeyRecord {
  const k2 = encoded.startsWith(KEY_FORMAT_K2);
  if (!k2 && !encoded.startsWith(KEY_FORMAT)) return JSON.parse(encoded) as KeyRecord;
  const fixed = k2 ? FIXED_K2 : FIXED;
  const split = encoded.indexOf(':', KEY_FORMAT.length);
  const base64 = encoded.slice(KEY_FORMAT.length, split);
  room(Math.ceil((base64.length * 3) / 4 / 8));
  const bytes = scratchBytes.write(base64, 0, 'base64');
  if (!LITTLE_ENDIAN) scratchBytes.subarray(0, bytes).swap64();
  const t = JSON.parse(encoded.slice(split + 1)) as unknown[];
  const flags = t[0] as number;
  const capacity = t[1] as number;
  const buckets = t[5] as number;
  let ti = 6 + 6 * buckets;
  const scope = t[ti++] as InsightScope;
  const insightType = t[ti++] as InsightType;
  const accountId = t[ti++] as string;
  const region = t[ti++] as string;
  const service = t[ti++] as string;
  const action = t[ti++] as string;
  const principal = t[ti++] as string | null;
  const errorCode = t[ti++] as string | null;
  const values = (size: number): string[] => {
    const out = t.slice(ti, ti + size) as string[];
    ti += size;
    return out;
  };
  let n = fixed;
  const hourly = flags & FLAG_HOURLY ? takeDoubles(n, 24) : null;
  if (hourly) n += 24;
  let baselineContributors: KeyRecord['baselineContributors'] = null;
  for (let s = 0; s < SKETCH_ATTRIBUTES.length; s++) {
    const size = t[2 + s] as number;
    if (size < 0) continue;
    const scale = scratch[n] as number;
    const counts = takeDoubles(n + 1, size);
    n += 1 + size;
    baselineContributors ??= {};
    baselineContributors[SKETCH_ATTRIBUTES[s] as SketchAttribute] = { capacity, values: values(size), counts, scale };
  }
  let pending: Record<string, BucketAcc> | null = null;
  for (let b = 0; b < buckets; b++) {
    const startMs = scratch[n++] as number;
    const count = scratch[n++] as number;
    const contributors = {} as Contributors;
    for (let a = 0; a < BUCKET_ATTRIBUTES.length; a++) {
      const cap = t[6 + 6 * b + 2 * a] as number;
      const size = t[7 + 6 * b + 2 * a] as number;
      const scale = scratch[n] as number;
      const counts = takeDoubles(n + 1, size);
      n += 1 + size;
      contributors[BUCKET_ATTRIBUTES[a] as AttributionAttribute] = { capacity: cap, values: [], counts, scale };
    }
    pending ??= {};
    pending[String(startMs)] = { count, contributors };
  }
  // The bucket values follow the sketch values, bucket by bucket, in BUCKET_ATTRIBUTES order.
  for (const b in pending) {
    const acc = (pending as Record<string, BucketAcc>)[b] as BucketAcc;
    for (const attr of BUCKET_ATTRIBUTES) acc.contributors[attr].values = values(acc.contributors[attr].counts.length);
  }
  const streak = flags & FLAG_STREAK ? (t[ti++] as Streak) : null;
  const field = (i: number) => scratch[i] as number;
  const record: KeyRecord = {
    id: keyId(scope, insightType, accountId, region, principal, service, action, errorCode),
    scope,
    insightType,
    accountId,
    region,
    service,
    action,
    principal,
    errorCode,
    lastFoldedMs: field(F.lastFoldedMs),
    observed: field(F.observed),
    mean: field(F.mean),
    ...(k2
      ? { variance: field(F.dispersion), hourlyVariance: field(F.hourlyDispersion) }
      : {
          dispersion: field(F.dispersion),
          hourlyDispersion: field(F.hourlyDispersion),
          cusum: takeDoubles(F.cusumUp, 2 * CUSUM_FIELDS + 1),
        }),
    hourly,
    burst: field(F.burst),
    dayPeak: field(F.dayPeak),
    dayPeakMinute: field(F.dayPeakMinute),
    dayPeakNear: field(F.dayPeakNear) === 1,
    prevPeakMinute: field(F.prevPeakMinute),
    nearDay: field(F.nearDay),
    baselineContributors,
    pending,
    streak,
    lastEventMs: field(F.lastEventMs),
  };
  if (flags & FLAG_FORWARD) record.forward = true;
  return record;
}
