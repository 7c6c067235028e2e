import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './shared.ts';

export const CLI_MAIN = join(REPO_ROOT, 'src/cli/main.ts');

export interface CliRun {
  child: ChildProcessWithoutNullStreams;
  /** What the command has printed so far. */
  stdout: () => string;
  stderr: () => string;
  /** Its exit status, once it closes. */
  closed: Promise<number | null>;
}

/** Starts `trailwatch <args>` (this checkout's CLI) and collects what it prints. */
export function startCli(args: string[], env: NodeJS.ProcessEnv = {}): CliRun {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], {
    env: { ...process.env, TRAILWATCH_LOG_LEVEL: 'warn', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin.end();
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const closed = new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  return { child, stdout: () => stdout, stderr: () => stderr, closed };
}

/** The JSON lines of what a command printed (pino's log lines on stderr, `--print`'s records on stdout), other lines left out. */
export function jsonLines<T = Record<string, unknown>>(text: string): T[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as T);
}

/** Runs `trailwatch <args>` to the end. */
export async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const run = startCli(args, env);
  const code = await run.closed;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}
