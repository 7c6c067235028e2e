import type { Logger } from '../logger.ts';
import type { LateEvents } from '../runtime/detector.ts';

const MINUTE_MS = 60_000;

interface Pending {
  count: number;
  minLateMs: number;
  maxLateMs: number;
  /** First late batch since the last line. */
  sinceMs: number;
}

/**
 * Late events made visible in the log without flooding it: at most one line per partition and
 * interval (a minute). The first late batch of a partition is logged at once; what follows within
 * the interval is summed and logged when the interval is over (`flush`, called on a timer), so a
 * burst that arrived after its buckets closed always shows up, once.
 */
export class LateEventLog {
  private readonly log: Logger;
  private readonly intervalMs: number;
  private readonly allowedLatenessMs: number;
  private readonly now: () => number;
  /** When each partition last had a line. */
  private readonly lastLineMs = new Map<string, number>();
  private readonly pending = new Map<string, Pending & { topic: string; partition: number }>();

  constructor(opts: { log: Logger; allowedLatenessMs: number; intervalMs?: number; now?: () => number }) {
    this.log = opts.log;
    this.allowedLatenessMs = opts.allowedLatenessMs;
    this.intervalMs = opts.intervalMs ?? MINUTE_MS;
    this.now = opts.now ?? Date.now;
  }

  note(late: LateEvents): void {
    if (late.count <= 0) return;
    const id = `${late.topic}:${late.partition}`;
    const nowMs = this.now();
    const p = this.pending.get(id);
    if (p) {
      p.count += late.count;
      p.minLateMs = Math.min(p.minLateMs, late.minLateMs);
      p.maxLateMs = Math.max(p.maxLateMs, late.maxLateMs);
    } else {
      this.pending.set(id, { ...late, sinceMs: nowMs });
    }
    this.flushOne(id, nowMs);
  }

  /** Writes the lines whose interval is over. */
  flush(): void {
    const nowMs = this.now();
    for (const id of [...this.pending.keys()]) this.flushOne(id, nowMs);
  }

  private flushOne(id: string, nowMs: number): void {
    const p = this.pending.get(id);
    if (!p || nowMs - (this.lastLineMs.get(id) ?? Number.NEGATIVE_INFINITY) < this.intervalMs) return;
    this.pending.delete(id);
    this.lastLineMs.set(id, nowMs);
    this.log.warn(
      {
        topic: p.topic,
        partition: p.partition,
        lateEvents: p.count,
        minLateMs: p.minLateMs,
        maxLateMs: p.maxLateMs,
        allowedLatenessMs: this.allowedLatenessMs,
        since: new Date(p.sinceMs).toISOString(),
      },
      `${p.count} late event${p.count === 1 ? '' : 's'} on partition ${p.partition} not counted in the rates: ` +
        `their buckets had closed, up to ${formatMs(p.maxLateMs)} before (detector.allowedLatenessMs = ${formatMs(this.allowedLatenessMs)}); the rules still saw them`,
    );
  }
}

function formatMs(ms: number): string {
  if (ms >= 3_600_000) return `${+(ms / 3_600_000).toFixed(1)} h`;
  if (ms >= 60_000) return `${+(ms / 60_000).toFixed(1)} min`;
  return `${+(ms / 1000).toFixed(1)} s`;
}
