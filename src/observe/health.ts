import type { DetectorView, StageName } from '../runtime/detector.ts';
import type { PartitionLag } from './metrics.ts';

/** What a probe answers: its verdict and, for the body, why. */
export interface Probe {
  ok: boolean;
  reasons: string[];
}

/** One owned partition with what readiness judges it by. */
export interface PartitionState {
  topic: string;
  partition: number;
  stage: StageName;
  /** Null until measured. */
  lag: number | null;
  /** Its task is running (its state restored from the changelog). */
  restored: boolean;
  keys: number;
  openInsights: number;
  watermarkMs: number | null;
}

/** The owned partitions, with their last measured lag and their task's state. */
export function partitionStates(view: DetectorView, lags: readonly PartitionLag[] | null): PartitionState[] {
  const lagOf = new Map((lags ?? []).map((l) => [`${l.topic}:${l.partition}`, l.lag]));
  const tasks = new Map(view.tasks.map((t) => [`${t.topic}:${t.partition}`, t]));
  return view.assignment
    .map((a) => {
      const id = `${a.topic}:${a.partition}`;
      const task = tasks.get(id);
      return {
        topic: a.topic,
        partition: a.partition,
        stage: a.stage,
        lag: lagOf.get(id) ?? null,
        restored: task !== undefined,
        keys: task?.activeKeys ?? 0,
        openInsights: task?.openInsights ?? 0,
        watermarkMs: task?.watermarkMs ?? null,
      };
    })
    .sort((a, b) => (a.stage === b.stage ? a.partition - b.partition : a.stage === 'principal' ? -1 : 1));
}

/**
 * /healthz: the process loop is alive (this answer is proof of it) and the runtime has neither
 * given up nor been stuck on one piece of work past detector.stallTimeoutMs.
 */
export function health(view: DetectorView | null, stallTimeoutMs: number): Probe {
  if (!view) return { ok: true, reasons: [] };
  const reasons: string[] = [];
  if (view.fatal) reasons.push('the detector gave up (see its last log line, "detector cannot go on")');
  if (view.busyMs > stallTimeoutMs)
    reasons.push(`one piece of work has run ${view.busyMs} ms, past detector.stallTimeoutMs (${stallTimeoutMs})`);
  return { ok: reasons.length === 0, reasons };
}

export interface ReadinessOptions {
  maxLagRecords: number;
  /** When lag was last measured (ms, wall clock), or null if never. */
  measuredAtMs: number | null;
  nowMs: number;
  /** A measurement older than this is not trusted (the admin requests keep failing). */
  maxMeasurementAgeMs: number;
}

/**
 * /readyz: partitions assigned, each restored (or with nothing to read yet: a partition gets its
 * task at its first record), none failing, and each at most `maxLagRecords` behind its end.
 */
export function readiness(view: DetectorView | null, states: readonly PartitionState[], o: ReadinessOptions): Probe {
  if (!view?.started) return { ok: false, reasons: ['starting: topics, schema registry and consumer group not ready yet'] };
  if (view.fatal) return { ok: false, reasons: ['the detector gave up'] };
  if (view.stopping) return { ok: false, reasons: ['stopping'] };
  if (states.length === 0) {
    return { ok: false, reasons: ['no partitions assigned (the group is rebalancing, or has more members than partitions)'] };
  }
  if (o.measuredAtMs === null) return { ok: false, reasons: ['consumer lag not measured yet'] };
  const reasons: string[] = [];
  const age = o.nowMs - o.measuredAtMs;
  if (age > o.maxMeasurementAgeMs) reasons.push(`consumer lag last measured ${age} ms ago (the admin requests are failing)`);
  for (const f of view.failing) reasons.push(`${f.id}: batches failing (attempt ${f.attempts}, ${f.code})`);
  for (const s of states) {
    const id = `${s.topic}:${s.partition}`;
    if (s.lag === null) reasons.push(`${id}: lag not measured yet`);
    else if (s.lag > o.maxLagRecords) reasons.push(`${id}: ${s.lag} records behind (observe.readyMaxLagRecords = ${o.maxLagRecords})`);
    else if (!s.restored && s.lag > 0) reasons.push(`${id}: state not restored yet (${s.lag} records to read)`);
  }
  return { ok: reasons.length === 0, reasons };
}
