/**
 * What the live-detector benchmarks share: the options every one takes, the machine line, order
 * statistics, and rewriting one section of BENCHMARKS.md in place.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import type { ClientName } from '../../src/transport/types.ts';

/** Options of every detector benchmark, for `parseArgs`. Defaults point at the second local stack (39092/38080). */
export const COMMON_OPTIONS = {
  runs: { type: 'string', default: '3' },
  client: { type: 'string', default: 'kafkajs' },
  brokers: { type: 'string', default: '127.0.0.1:39092' },
  registry: { type: 'string', default: 'http://127.0.0.1:38080/apis/ccompat/v7' },
  write: { type: 'boolean', default: false },
  /** Where the spawned detectors' logs go; a fresh temporary directory when left out. */
  'log-dir': { type: 'string' },
} as const;

export function clientName(value: string): ClientName {
  if (value !== 'kafkajs' && value !== 'platformatic') throw new Error(`--client must be kafkajs or platformatic, not "${value}"`);
  return value;
}

/** A name no earlier run used: topics and groups of one benchmark run. */
export function runId(): string {
  return `${Date.now().toString(36)}${process.pid.toString(36)}`;
}

export function machine(): string {
  const cpu = cpus()[0]?.model.trim() ?? 'cpu';
  const [load] = loadavg();
  return `${cpus().length} × ${cpu}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}/${process.arch}; the broker on the same machine (its ${cpus().length} cores shared with it); load average ${(load ?? 0).toFixed(1)} when the benchmark started`;
}

export function median(xs: readonly number[]): number {
  return quantile(xs, 0.5);
}

/** Nearest-rank quantile (q in [0, 1]): p99 of 40 samples is the largest but none. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] as number;
}

export const fmt = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value (not undefined) or `timeoutMs` passes; then throws `what`. */
export async function until<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(everyMs);
  }
}

/** Replaces the `<!-- name:start -->…<!-- name:end -->` section of BENCHMARKS.md (appends it when missing). */
export function writeSection(name: string, lines: string[]): void {
  const section = [`<!-- ${name}:start -->`, ...lines, `<!-- ${name}:end -->`].join('\n');
  const file = join(import.meta.dirname, '../../BENCHMARKS.md');
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const re = new RegExp(`<!-- ${name}:start -->[\\s\\S]*?<!-- ${name}:end -->`);
  writeFileSync(file, re.test(text) ? text.replace(re, () => section) : `${text.trimEnd()}\n\n${section}\n`);
}

/** The section as it would be written, for the summary on stdout. */
export function sectionText(lines: string[]): string {
  return `${lines.join('\n')}\n`;
}

/** Which stack a benchmark ran against, for its BENCHMARKS.md line. */
export function stackText(brokers: string, registry: string): string {
  return brokers === COMMON_OPTIONS.brokers.default
    ? 'against the second local stack (39092/38080)'
    : `against the stack at ${brokers} (registry ${registry})`;
}
