/**
 * A detector as a user runs it: `node src/cli/main.ts run --config <file>` in a child process,
 * brokers and registry from the environment, the Kafka client from TRAILWATCH_KAFKA__CLIENT.
 * Benchmarks drive it from the outside (topics, offsets, its log), so they measure whatever the
 * runtime is, not an internal API. Every detector spawned here is killed when the benchmark
 * process exits, however it exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { ConfigInput } from '../../src/config/schema.ts';
import type { ClientName } from '../../src/transport/types.ts';

const MAIN = join(import.meta.dirname, '../../src/cli/main.ts');

/** A parsed pino line of the detector's log, with the wall time the benchmark read it at. */
export interface LogLine {
  msg: string;
  level: number;
  /** pino's timestamp (ms since the epoch, the detector's clock). */
  time: number;
  /** When this process read the line (performance.now()). */
  readAt: number;
  [field: string]: unknown;
}

export interface SpawnOptions {
  name: string;
  config: ConfigInput;
  client: ClientName;
  brokers: string;
  registry: string;
  logDir: string;
  /** Extra node flags (e.g. --cpu-prof). */
  nodeFlags?: string[];
}

const live = new Set<ChildProcess>();

function killAll(): void {
  for (const child of live) child.kill('SIGKILL');
  live.clear();
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}
process.on('uncaughtException', (err) => {
  process.stderr.write(`${err.stack ?? String(err)}\n`);
  killAll();
  process.exit(1);
});
process.on('unhandledRejection', (err) => {
  process.stderr.write(`${(err as Error)?.stack ?? String(err)}\n`);
  killAll();
  process.exit(1);
});

/** A temporary directory for logs and config files, unless one is given. */
export function logDirectory(given: string | undefined, prefix: string): string {
  return given ?? mkdtempSync(join(tmpdir(), `tw-bench-${prefix}-`));
}

export class DetectorProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly logFile: string;
  readonly lines: LogLine[] = [];
  readonly spawnedAt: number;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitedWith: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private waiters: Array<() => void> = [];

  private constructor(name: string, child: ChildProcess, logFile: string) {
    this.name = name;
    this.child = child;
    this.logFile = logFile;
    this.spawnedAt = performance.now();
    const out = createWriteStream(logFile);
    child.stdout?.pipe(out);
    // pino writes to stderr: each line is kept parsed for the benchmark and copied to the file.
    if (child.stderr) {
      const rl = createInterface({ input: child.stderr });
      rl.on('line', (text) => {
        out.write(`${text}\n`);
        if (!text.startsWith('{')) return;
        try {
          this.lines.push({ ...(JSON.parse(text) as LogLine), readAt: performance.now() });
        } catch {
          return;
        }
        this.wake();
      });
    }
    this.exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        live.delete(child);
        this.exitedWith = { code, signal };
        this.wake();
        resolve({ code, signal });
      }),
    );
  }

  static async spawn(o: SpawnOptions): Promise<DetectorProcess> {
    const configFile = join(o.logDir, `${o.name}.config.json`);
    await writeFile(configFile, JSON.stringify(o.config, null, 2));
    const child = spawn(process.execPath, [...(o.nodeFlags ?? []), MAIN, 'run', '--config', configFile, '--log-level', 'info'], {
      env: {
        ...process.env,
        KAFKA_BROKERS: o.brokers,
        SCHEMA_REGISTRY_URL: o.registry,
        TRAILWATCH_KAFKA__CLIENT: o.client,
        KAFKAJS_NO_PARTITIONER_WARNING: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(child);
    return new DetectorProcess(o.name, child, join(o.logDir, `${o.name}.log`));
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  /** The first log line (from the start) matching `test`; throws on timeout or when the detector exits first. */
  async waitFor(what: string, test: (line: LogLine) => boolean, timeoutMs: number): Promise<LogLine> {
    const deadline = performance.now() + timeoutMs;
    for (let seen = 0; ; ) {
      for (; seen < this.lines.length; seen++) if (test(this.lines[seen] as LogLine)) return this.lines[seen] as LogLine;
      if (this.exitedWith) {
        throw new Error(`${this.name} exited (${JSON.stringify(this.exitedWith)}) before logging ${what}; its log: ${this.logFile}`);
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`${this.name} did not log ${what} within ${timeoutMs} ms; its log: ${this.logFile}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Throws when the detector has exited (it never should during a measurement). */
  assertRunning(): void {
    if (this.exitedWith) throw new Error(`${this.name} exited (${JSON.stringify(this.exitedWith)}); its log: ${this.logFile}`);
  }

  /** Log lines at warn or above, as `msg` counts: what went wrong during the run, for the summary. */
  warnings(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const l of this.lines) if (l.level >= 40) out[l.msg] = (out[l.msg] ?? 0) + 1;
    return out;
  }

  /** SIGTERM (finish the batch, commit, leave the group), SIGKILL if it takes longer than `graceMs`. The stop summary line, if logged. */
  async stop(graceMs = 20_000): Promise<LogLine | undefined> {
    if (!this.exitedWith) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    return this.lines.find((l) => l.msg === 'detector stopped');
  }
}
