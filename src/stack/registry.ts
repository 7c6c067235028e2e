/**
 * Apicurio Registry for the local stack: the Quarkus application on 127.0.0.1, serving the
 * Confluent-compatible API at /apis/ccompat/v7. Its storage is SQL on an H2 *file* database in
 * `<state>/registry/db/`, so schemas and their ids survive restarts (records already in Kafka keep
 * decoding). It does not depend on Kafka, so both start side by side.
 */

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { classDataSharingArgs, type JavaRuntime, type RegistryDist } from './maven.ts';

const REGISTRY = {
  /** JVM heap for the registry. */
  heapMax: '512m',
  heapInitial: '64m',
  /** JDBC pool: a development registry needs a handful of connections, not Apicurio's default 20-100. */
  poolMin: 2,
  poolMax: 20,
  /** Size at which registry.log rolls over, and how many old files are kept. */
  logFileSize: '20M',
  logFilesKept: 3,
  /** Budget for one health probe, in ms. */
  probeTimeoutMs: 3_000,
  /** Path of the Confluent-compatible API. */
  ccompatPath: '/apis/ccompat/v7',
} as const satisfies Record<string, string | number>;

export interface RegistryLayout {
  /** `<state>/registry`. */
  dir: string;
  /** H2 database directory; the database file is `registry.mv.db` in it. */
  dbDir: string;
  /** Scratch space for imports and snapshots. */
  workDir: string;
  /** Registry log, written by Quarkus. */
  logFile: string;
  /** The JVM's own stdout/stderr (crashes before logging starts). */
  outFile: string;
}

export function registryLayout(stateDir: string): RegistryLayout {
  const dir = join(stateDir, 'registry');
  return {
    dir,
    dbDir: join(dir, 'db'),
    workDir: join(dir, 'work'),
    logFile: join(stateDir, 'logs', 'registry.log'),
    outFile: join(stateDir, 'logs', 'registry.out'),
  };
}

export function registryUrlFor(port: number): string {
  return `http://127.0.0.1:${port}${REGISTRY.ccompatPath}`;
}

export async function prepareRegistry(layout: RegistryLayout): Promise<void> {
  await mkdir(layout.dbDir, { recursive: true });
  await mkdir(layout.workDir, { recursive: true });
  await mkdir(join(layout.logFile, '..'), { recursive: true });
}

/** JVM arguments that start the registry. Configuration is passed as system properties, which Quarkus reads first. */
export function registryJavaArgs(layout: RegistryLayout, dist: RegistryDist, java: JavaRuntime, port: number, marker: string[]): string[] {
  const props: Record<string, string | number | boolean> = {
    'quarkus.http.host': '127.0.0.1',
    'quarkus.http.port': port,
    // The management interface (health, metrics) is compiled in; give it a free loopback port
    // instead of the fixed 9000 so that it never collides with anything.
    'quarkus.management.host': '127.0.0.1',
    'quarkus.management.port': 0,
    // Persistent storage: SQL on an H2 file database.
    'apicurio.storage.kind': 'sql',
    'apicurio.storage.sql.kind': 'h2',
    'apicurio.datasource.url': `jdbc:h2:file:${join(layout.dbDir, 'registry')}`,
    'apicurio.datasource.jdbc.initial-size': REGISTRY.poolMin,
    'apicurio.datasource.jdbc.min-size': REGISTRY.poolMin,
    'apicurio.datasource.jdbc.max-size': REGISTRY.poolMax,
    'apicurio.storage.snapshot.location': layout.workDir,
    'apicurio.import.work-dir': layout.workDir,
    // ccompat ids are content ids (the default, stated here because it matters): the id that
    // POST /subjects/{s}/versions returns is the one GET /schemas/ids/{id} serves, and the same
    // schema registered under two subjects gets one id, as with Confluent's registry.
    'apicurio.ccompat.legacy-id-mode.enabled': false,
    // Logs to a rotating file in the state dir; the console (registry.out) keeps only the banner.
    'quarkus.log.file.enabled': true,
    'quarkus.log.file.json.enabled': false,
    'quarkus.log.file.format': '%d{yyyy-MM-dd HH:mm:ss,SSS} %-5p [%c{3.}] (%t) %s%e%n',
    'quarkus.log.file.path': layout.logFile,
    'quarkus.log.file.rotation.max-file-size': REGISTRY.logFileSize,
    'quarkus.log.file.rotation.max-backup-index': REGISTRY.logFilesKept,
    'quarkus.log.console.enabled': false,
    'vertx.cacheDirBase': join(layout.workDir, 'vertx-cache'),
  };
  return [
    ...marker,
    `-Xms${REGISTRY.heapInitial}`,
    `-Xmx${REGISTRY.heapMax}`,
    '-Djava.awt.headless=true',
    `-Djava.io.tmpdir=${layout.workDir}`,
    ...classDataSharingArgs(java, join(layout.workDir, `registry-${dist.version}-java${java.version}.jsa`)),
    ...Object.entries(props).map(([key, value]) => `-D${key}=${value}`),
    '-jar',
    dist.runJar,
  ];
}

/** True when `GET <registryUrl>/subjects` answers 200. Never throws. */
export async function registryHealthy(registryUrl: string): Promise<boolean> {
  try {
    const response = await fetch(`${registryUrl}/subjects`, { signal: AbortSignal.timeout(REGISTRY.probeTimeoutMs) });
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  }
}
