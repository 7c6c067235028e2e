/**
 * Files in, records out, for any source: which files to read (walked, filtered by the time their
 * names carry, recognised and skipped by name, in a deterministic order) and their items read one
 * file ahead. `publish` runs this per worker thread over its share of the files; `backtest` and
 * tests run it on one thread.
 */
import type { AuditEvent } from '../contracts/types.ts';
import { BadRecordError } from '../errors.ts';
import { DEFAULT_MAX_FILE_BYTES, type DeliveryErrorItem, expandInputPaths } from './files.ts';
import { located, type Normalized, positionNumber, type ReadItem, Skip, type Source } from './source.ts';

/** --since/--until: ms since the epoch, `since` inclusive, `until` exclusive; null is open. */
export interface TimeRange {
  sinceMs: number | null;
  untilMs: number | null;
}

export const OPEN_RANGE: TimeRange = { sinceMs: null, untilMs: null };

export type PlannedEntry = { kind: 'file'; file: string; timeMs: number | null } | DeliveryErrorItem;

export interface InputPlan {
  /** Files to read, and paths that could not be walked, in reading order. */
  entries: PlannedEntry[];
  /** Files recognised by name and not read (digest files, Insights deliveries), by reason. */
  skippedFiles: Record<string, number>;
  /** Files whose name time is outside --since/--until: never opened. */
  outOfRangeFiles: number;
}

export function inRange(timeMs: number, range: TimeRange): boolean {
  return (range.sinceMs === null || timeMs >= range.sinceMs) && (range.untilMs === null || timeMs < range.untilMs);
}

/**
 * The files to read under `paths` for `source`. A file whose name carries a time (a CloudTrail
 * delivery's) outside `range` is counted and left unopened, as is a file the source recognises as
 * not its records; a directory whose date folders (`…/YYYY/MM/DD`) lie outside the range is not
 * even listed. Files with a time in their names are read in time order, then by path, in the
 * places such files held in the walk; everything else keeps the walk's order (paths as given,
 * directories sorted by name).
 */
export async function planInputs(paths: readonly string[], source: Source, range: TimeRange = OPEN_RANGE): Promise<InputPlan> {
  const ranged = range.sinceMs !== null || range.untilMs !== null;
  let outOfRangeFiles = 0;
  const skippedFiles: Record<string, number> = {};
  const skipDir = ranged
    ? (dir: string): boolean => {
        const span = dateFolderSpan(dir);
        return span !== null && !spansOverlap(span, range);
      }
    : undefined;
  const entries: PlannedEntry[] = [];
  for (const entry of await expandInputPaths(paths, source.extensions, { skipDir })) {
    if (entry.kind === 'error') {
      entries.push(entry);
      continue;
    }
    const plan = source.planFile(entry.file);
    if (plan.kind === 'skip') {
      skippedFiles[plan.reason] = (skippedFiles[plan.reason] ?? 0) + 1;
      continue;
    }
    if (plan.timeMs !== null && ranged && !inRange(plan.timeMs, range)) {
      outOfRangeFiles++;
      continue;
    }
    entries.push({ kind: 'file', file: entry.file, timeMs: plan.timeMs });
  }
  // Timed files take the places timed files held, in (time, path) order: several accounts and
  // regions interleave by time, and the order is the same on every machine.
  const slots: number[] = [];
  entries.forEach((e, i) => {
    if (e.kind === 'file' && e.timeMs !== null) slots.push(i);
  });
  const timed = slots.map((i) => entries[i] as Extract<PlannedEntry, { kind: 'file' }>);
  timed.sort((a, b) => (a.timeMs as number) - (b.timeMs as number) || (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
  slots.forEach((slot, k) => {
    entries[slot] = timed[k] as PlannedEntry;
  });
  return { entries, skippedFiles, outOfRangeFiles };
}

/** The UTC days an S3 date folder (`…/YYYY/MM/DD`, `…/YYYY/MM`) covers, or null for any other folder. */
function dateFolderSpan(dir: string): { fromMs: number; toMs: number } | null {
  const day = /[/\\](\d{4})[/\\](\d{2})[/\\](\d{2})[/\\]?$/.exec(dir);
  if (day) {
    const fromMs = Date.UTC(Number(day[1]), Number(day[2]) - 1, Number(day[3]));
    return { fromMs, toMs: fromMs + 86_400_000 };
  }
  const month = /[/\\](?:CloudTrail|CloudTrail-Insight|CloudTrail-Digest)[/\\][^/\\]+[/\\](\d{4})[/\\](\d{2})[/\\]?$/.exec(dir);
  if (month) {
    const y = Number(month[1]);
    const m = Number(month[2]) - 1;
    return { fromMs: Date.UTC(y, m, 1), toMs: Date.UTC(y, m + 1, 1) };
  }
  return null;
}

function spansOverlap(span: { fromMs: number; toMs: number }, range: TimeRange): boolean {
  return (range.untilMs === null || span.fromMs < range.untilMs) && (range.sinceMs === null || span.toMs > range.sinceMs);
}

/** One file's items, batch after batch; `end` marks the (empty) batch after a file's last. */
export interface FileBatch {
  /** Index of the file (or path error) in the planned entries. */
  entry: number;
  file: string;
  items: ReadItem[];
  end: boolean;
}

/**
 * The items of every planned file in order, the next file's first batch read while this one's
 * are used (reading and gunzip run in libuv's pool, overlapping the caller's work). A path that
 * could not be walked comes as one error item.
 */
export async function* readPlanned(
  entries: readonly PlannedEntry[],
  source: Source,
  maxFileBytes: number = DEFAULT_MAX_FILE_BYTES,
): AsyncGenerator<FileBatch> {
  type Open = { it: AsyncIterator<ReadItem[]>; first: Promise<IteratorResult<ReadItem[]>> } | null;
  const openAt = (i: number): Open => {
    const e = entries[i];
    if (e?.kind !== 'file') return null;
    const it = source.read(e.file, { maxFileBytes })[Symbol.asyncIterator]();
    return { it, first: it.next() };
  };
  let next = openAt(0);
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i] as PlannedEntry;
    const current = next;
    next = openAt(i + 1);
    if (entry.kind === 'error') {
      const at = { origin: entry.file, line: null, index: entry.index };
      yield { entry: i, file: entry.file, items: [{ kind: 'error', at, error: entry.error }], end: false };
    } else {
      const open = current as NonNullable<Open>;
      for (let r = await open.first; !r.done; r = await open.it.next()) yield { entry: i, file: entry.file, items: r.value, end: false };
    }
    yield { entry: i, file: entry.file, items: [], end: true };
  }
}

/** What one raw item became: an event, a skip, or an error whose message leads with the position. */
export type Outcome =
  | { kind: 'event'; item: Extract<ReadItem, { kind: 'record' }>; event: AuditEvent }
  | { kind: 'skip'; item: ReadItem; reason: string }
  | { kind: 'error'; item: ReadItem; error: BadRecordError };

/** Normalizes one read item with `source`. */
export function outcomeOf(source: Source, item: ReadItem): Outcome {
  if (item.kind === 'skip') return { kind: 'skip', item, reason: item.reason };
  if (item.kind === 'error') return { kind: 'error', item, error: item.error };
  const n: Normalized = source.normalize(item.record);
  if (n instanceof Skip) return { kind: 'skip', item, reason: n.reason };
  if (n instanceof BadRecordError) return { kind: 'error', item, error: located(n, item.at) };
  return { kind: 'event', item, event: n };
}

/** The number a record's place is reported by (a line, or an index in its document). */
export function placeOf(item: ReadItem): number | null {
  return positionNumber(item.at);
}
