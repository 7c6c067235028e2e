/**
 * A second Apicurio Registry that enforces HTTP basic auth, for the registry-credentials tests.
 * The local stack's registry stays open (every test and tool registers schemas anonymously), so
 * this one is started from the same cached artifacts with trailwatch's own start arguments
 * (src/stack/registry.ts, `prepareRegistry({ users })`), on a free port, with its state in a
 * temporary directory, and stopped after the tests. Nothing is downloaded: without the cached
 * registry it reports a skip reason instead.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveStackOptions } from '../../src/stack/local.ts';
import { ensureJava, ensureRegistryDist } from '../../src/stack/maven.ts';
import { prepareRegistry, registryHealthy, registryJavaArgs, registryLayout, registryUrlFor } from '../../src/stack/registry.ts';

const START_TIMEOUT_MS = 120_000; // two minutes: a cold Quarkus start on 2 busy cores

export interface AuthRegistry {
  url: string;
  username: string;
  password: string;
  stop: () => Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/** Starts the registry, or returns the reason it cannot (for `t.skip`). */
export async function startAuthRegistry(): Promise<AuthRegistry | string> {
  const o = resolveStackOptions({ log: () => {} });
  const distDir = join(o.cacheDir, `apicurio-registry-${o.registryVersion}`);
  if (!existsSync(join(distDir, '.trailwatch-complete'))) {
    return `Apicurio Registry ${o.registryVersion} is not in the cache (${distDir}); run \`trailwatch stack up\` once`;
  }
  const quiet = (): void => {};
  const hostJava = await ensureJava(17, o.cacheDir, quiet, 'the test registry');
  const dist = await ensureRegistryDist(o.cacheDir, o.registryVersion, quiet, hostJava);
  const java = await ensureJava(dist.javaMajor, o.cacheDir, quiet, 'the test registry');

  const stateDir = await mkdtemp(join(tmpdir(), 'trailwatch-auth-registry-'));
  const layout = registryLayout(stateDir);
  const username = 'trailwatch-test';
  const password = randomBytes(12).toString('hex');
  await prepareRegistry(layout, { users: [{ username, password }] });
  const port = await freePort();
  const child: ChildProcess = spawn(java.bin, registryJavaArgs(layout, dist, java, port, ['-Dtrailwatch.test=auth-registry']), {
    cwd: layout.dir,
    stdio: 'ignore',
  });
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  const stop = async (): Promise<void> => {
    if (!exited) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 15_000))]);
      if (!exited) child.kill('SIGKILL');
    }
    await rm(stateDir, { recursive: true, force: true });
  };
  const url = registryUrlFor(port);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await registryHealthy(url))) {
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`the basic-auth registry did not start on ${url} (log: ${layout.logFile})`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { url, username, password, stop };
}
