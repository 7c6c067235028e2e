/**
 * A Python virtual environment for the tests that run the subscribers' scripts
 * (scripts/consumers/): `.tools/py/` (gitignored), made with the machine's Python 3 and filled from
 * PyPI with `pip install -r scripts/consumers/requirements.txt` on first use, then reused while
 * that file is unchanged (a marker written last holds its hash, so a half-done install is redone).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './shared.ts';

const run = promisify(execFile);

export const PY_ENV_DIR = join(REPO_ROOT, '.tools/py');
export const PY_REQUIREMENTS = join(REPO_ROOT, 'scripts/consumers/requirements.txt');
const MARKER = join(PY_ENV_DIR, '.trailwatch-requirements');
const INSTALL_TIMEOUT_MS = 300_000; // five minutes: a cold pip install takes about 20 s here
/** The interpreters tried, first that runs wins; the client needs 3.8+, CI machines have 3.11. */
const PYTHONS = ['python3.11', 'python3', 'python'];

export const IN_CI = process.env.CI === 'true' || process.env.CI === '1';

/** The command a person runs to do by hand what `pythonEnv` does. */
export const PY_INSTALL_COMMAND = `python3 -m venv .tools/py && .tools/py/bin/pip install -r scripts/consumers/requirements.txt`;

async function basePython(): Promise<string> {
  for (const candidate of PYTHONS) {
    try {
      const { stdout } = await run(candidate, ['-c', 'import sys; print(sys.version_info >= (3, 8))']);
      if (stdout.trim() === 'True') return candidate;
    } catch {
      // not on PATH, or broken: try the next one
    }
  }
  throw new Error(`no Python 3.8+ found (tried ${PYTHONS.join(', ')})`);
}

/**
 * The venv's python, installing it when missing or stale; rejects with what went wrong (pip's last
 * lines included) when it cannot be made.
 */
export async function pythonEnv(log: (line: string) => void = () => {}): Promise<string> {
  const python = join(PY_ENV_DIR, 'bin/python');
  const wanted = createHash('sha256')
    .update(await readFile(PY_REQUIREMENTS))
    .digest('hex');
  if (existsSync(python) && existsSync(MARKER) && (await readFile(MARKER, 'utf8')).trim() === wanted) return python;
  log(`python: installing scripts/consumers/requirements.txt into .tools/py/ (once; ${PY_INSTALL_COMMAND})`);
  await rm(PY_ENV_DIR, { recursive: true, force: true });
  const base = await basePython();
  try {
    await run(base, ['-m', 'venv', PY_ENV_DIR], { timeout: INSTALL_TIMEOUT_MS });
    await run(python, ['-m', 'pip', 'install', '--quiet', '--disable-pip-version-check', '-r', PY_REQUIREMENTS], {
      timeout: INSTALL_TIMEOUT_MS,
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    const tail = (e.stderr ?? '').trim().split('\n').slice(-5).join('\n');
    throw new Error(`could not install the Python client with ${base}: ${e.message.split('\n')[0]}${tail ? `\n${tail}` : ''}`);
  }
  await writeFile(MARKER, `${wanted}\n`);
  return python;
}
