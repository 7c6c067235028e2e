/**
 * The local stack: Apache Kafka (KRaft, one node) and Apicurio Registry as two detached JVM
 * processes on 127.0.0.1, with their artifacts fetched once into the cache directory and their
 * state, pid files and logs in `<cache>/stack/`. `trailwatch stack up|down|status`, the demo and
 * `npm test` use it; nothing here needs Docker.
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, open, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { ErrorCodes, errorMessage, isTrailwatchError, TrailwatchError } from '../errors.ts';
import {
  addScramUsers,
  kafkaHealthy,
  kafkaJavaArgs,
  kafkaLayout,
  prepareKafka,
  SASL_MECHANISMS,
  saslPortFor,
  tlsPortFor,
} from './kafka.ts';
import { ensureJava, ensureKafkaDist, ensureRegistryDist, type JavaRuntime } from './maven.ts';
import { prepareRegistry, registryHealthy, registryJavaArgs, registryLayout, registryUrlFor } from './registry.ts';

export interface StackOptions {
  cacheDir?: string;
  kafkaVersion?: string;
  registryVersion?: string;
  kafkaPort?: number;
  controllerPort?: number;
  registryPort?: number;
  log?: (line: string) => void;
}

/**
 * The broker's secure listeners and the dev user that may use them. The password itself is never
 * here, only the file holding it (mode 0600), so printing this is safe.
 */
export interface SecureListeners {
  /** SASL_PLAINTEXT, mechanisms PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512. */
  saslBrokers: string[];
  mechanisms: readonly string[];
  /** SSL, with a certificate for localhost and 127.0.0.1 signed by `caFile`. */
  tlsBrokers: string[];
  /** The CA certificate (PEM) that clients trust. */
  caFile: string;
  username: string;
  passwordFile: string;
}

export interface StackInfo {
  brokers: string[];
  /** The Confluent-compatible API, e.g. http://127.0.0.1:18080/apis/ccompat/v7 */
  registryUrl: string;
  kafkaPid: number;
  registryPid: number;
  /** True when both processes were already running and healthy, so this call started nothing. */
  reused: boolean;
  stateDir: string;
  logs: { kafka: string; registry: string };
  /** Null when the running broker was started by a trailwatch without secure listeners (restart it to get them). */
  secure: SecureListeners | null;
}

export interface StackStatus {
  running: boolean;
  kafka: { pid: number | null; healthy: boolean };
  registry: { pid: number | null; healthy: boolean };
  brokers: string[];
  registryUrl: string;
  /** As in StackInfo; null when the stack is not running or predates the secure listeners. */
  secure: SecureListeners | null;
}

interface StackDefaults {
  cacheDir: string;
  kafkaVersion: string;
  registryVersion: string;
  kafkaPort: number;
  registryPort: number;
  kafkaMinJava: number;
  startTimeoutMs: number;
  stopTimeoutMs: number;
  pollIntervalMs: number;
  logTailLines: number;
}

/** Every default of the local stack, in one place. */
const DEFAULTS = {
  /** Directory for downloads and state; option `cacheDir`, else TRAILWATCH_CACHE_DIR. */
  cacheDir: join(homedir(), '.cache', 'trailwatch'),
  /** Apache Kafka release (Maven Central org.apache.kafka:kafka_2.13). */
  kafkaVersion: '4.1.2',
  /** Apicurio Registry release (Maven Central io.apicurio:apicurio-registry-app, tar.gz:all). */
  registryVersion: '3.3.3',
  /** TCP port of Kafka's client listener on 127.0.0.1; TRAILWATCH_STACK_KAFKA_PORT. The KRaft controller
   *  listens on the next port (19093) unless option `controllerPort` or TRAILWATCH_STACK_CONTROLLER_PORT says otherwise. */
  kafkaPort: 19092,
  /** TCP port of the registry on 127.0.0.1; TRAILWATCH_STACK_REGISTRY_PORT. */
  registryPort: 18080,
  /** Lowest Java major version the Kafka 4 broker runs on. (The registry's is read from its jar.) */
  kafkaMinJava: 17,
  /** How long both processes get to become healthy, in ms. */
  startTimeoutMs: 120_000,
  /** How long a process gets to exit after SIGTERM before SIGKILL, in ms. */
  stopTimeoutMs: 30_000,
  /** Interval between health probes and liveness checks, in ms. */
  pollIntervalMs: 250,
  /** Lines of a log file quoted in an error, in lines. */
  logTailLines: 15,
} satisfies StackDefaults;

const PORT_ENV = {
  kafkaPort: 'TRAILWATCH_STACK_KAFKA_PORT',
  controllerPort: 'TRAILWATCH_STACK_CONTROLLER_PORT',
  registryPort: 'TRAILWATCH_STACK_REGISTRY_PORT',
} as const;

type ResolvedOptions = Required<Omit<StackOptions, 'log'>> & { log: (line: string) => void };

function defaultLog(line: string): void {
  process.stderr.write(`trailwatch stack: ${line}\n`);
}

function portFrom(value: number | string | undefined, source: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const port = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new TrailwatchError(ErrorCodes.STACK, `${source} must be a TCP port (1-65535), got ${JSON.stringify(value)}`, { fault: 'user' });
  }
  return port;
}

function expandHome(path: string): string {
  return path === '~' ? homedir() : path.startsWith('~/') ? join(homedir(), path.slice(2)) : path;
}

/** Options with every default filled in: option, then environment variable, then default. */
export function resolveStackOptions(options: StackOptions = {}): ResolvedOptions {
  const env = process.env;
  const kafkaPort = portFrom(options.kafkaPort, 'kafkaPort') ?? portFrom(env[PORT_ENV.kafkaPort], PORT_ENV.kafkaPort) ?? DEFAULTS.kafkaPort;
  const controllerPort =
    portFrom(options.controllerPort, 'controllerPort') ?? portFrom(env[PORT_ENV.controllerPort], PORT_ENV.controllerPort) ?? kafkaPort + 1;
  const registryPort =
    portFrom(options.registryPort, 'registryPort') ?? portFrom(env[PORT_ENV.registryPort], PORT_ENV.registryPort) ?? DEFAULTS.registryPort;
  if (new Set([kafkaPort, controllerPort, saslPortFor(kafkaPort), tlsPortFor(kafkaPort), registryPort]).size !== 5) {
    throw new TrailwatchError(
      ErrorCodes.STACK,
      `the stack's ports must differ: Kafka ${kafkaPort} (SASL ${saslPortFor(kafkaPort)}, TLS ${tlsPortFor(kafkaPort)}), ` +
        `controller ${controllerPort}, registry ${registryPort} ` +
        `(${PORT_ENV.kafkaPort}, ${PORT_ENV.controllerPort}, ${PORT_ENV.registryPort})`,
      { fault: 'user' },
    );
  }
  const cacheDir = options.cacheDir ?? (env.TRAILWATCH_CACHE_DIR || undefined) ?? DEFAULTS.cacheDir;
  return {
    cacheDir: resolve(expandHome(cacheDir)),
    kafkaVersion: options.kafkaVersion ?? DEFAULTS.kafkaVersion,
    registryVersion: options.registryVersion ?? DEFAULTS.registryVersion,
    kafkaPort,
    controllerPort,
    registryPort,
    log: options.log ?? defaultLog,
  };
}

// ---------------------------------------------------------------------------------------------
// Processes

type ComponentName = 'kafka' | 'registry';

interface Component {
  name: ComponentName;
  label: string;
  pidFile: string;
  logFile: string;
  outFile: string;
  /** Ports it listens on, with the option's environment variable, for conflict messages. */
  ports: { port: number; what: string; env: string }[];
  healthy: () => Promise<boolean>;
}

/** Ports and versions of the processes as started; status and down use them over the options. */
interface StackRecord {
  kafkaPort: number;
  controllerPort: number;
  registryPort: number;
  kafkaVersion: string;
  registryVersion: string;
  startedAt: string;
  java: { kafka: string; registry: string };
  /** True when the broker was started with the SASL and SSL listeners (absent in older records). */
  secure?: boolean;
}

/**
 * `<cache>/stack` for the default ports, `<cache>/stack-<kafka>-<controller>-<registry>` for any
 * other set, so a second stack on other ports (another checkout, a test run) never shares state,
 * pid files or the lock with the first.
 */
function stateDirOf(o: ResolvedOptions): string {
  const defaults =
    o.kafkaPort === DEFAULTS.kafkaPort && o.controllerPort === DEFAULTS.kafkaPort + 1 && o.registryPort === DEFAULTS.registryPort;
  return join(o.cacheDir, defaults ? 'stack' : `stack-${o.kafkaPort}-${o.controllerPort}-${o.registryPort}`);
}

function secureListeners(stateDir: string, kafkaPort: number): SecureListeners {
  const { secure } = kafkaLayout(stateDir);
  return {
    saslBrokers: [`127.0.0.1:${saslPortFor(kafkaPort)}`],
    mechanisms: SASL_MECHANISMS,
    tlsBrokers: [`127.0.0.1:${tlsPortFor(kafkaPort)}`],
    caFile: secure.caFile,
    username: 'trailwatch',
    passwordFile: secure.passwordFile,
  };
}

function brokersFor(kafkaPort: number): string[] {
  return [`127.0.0.1:${kafkaPort}`];
}

function components(
  stateDir: string,
  ports: { kafkaPort: number; controllerPort: number; registryPort: number },
): Record<ComponentName, Component> {
  const kafka = kafkaLayout(stateDir);
  const registry = registryLayout(stateDir);
  const registryUrl = registryUrlFor(ports.registryPort);
  return {
    kafka: {
      name: 'kafka',
      label: 'Kafka',
      pidFile: join(stateDir, 'kafka.pid'),
      logFile: kafka.logFile,
      outFile: kafka.outFile,
      ports: [
        { port: ports.kafkaPort, what: 'Kafka', env: PORT_ENV.kafkaPort },
        { port: ports.controllerPort, what: 'the Kafka controller', env: PORT_ENV.controllerPort },
        { port: saslPortFor(ports.kafkaPort), what: "Kafka's SASL listener (Kafka port + 2)", env: PORT_ENV.kafkaPort },
        { port: tlsPortFor(ports.kafkaPort), what: "Kafka's TLS listener (Kafka port + 3)", env: PORT_ENV.kafkaPort },
      ],
      healthy: () => kafkaHealthy(brokersFor(ports.kafkaPort)),
    },
    registry: {
      name: 'registry',
      label: 'Apicurio Registry',
      pidFile: join(stateDir, 'registry.pid'),
      logFile: registry.logFile,
      outFile: registry.outFile,
      ports: [{ port: ports.registryPort, what: 'Apicurio Registry', env: PORT_ENV.registryPort }],
      healthy: () => registryHealthy(registryUrl),
    },
  };
}

/** Command-line arguments that tag a JVM as this stack's, so a pid is never mistaken for another program's. */
function markerArgs(name: ComponentName, stateDir: string): string[] {
  return [`-Dtrailwatch.stack=${name}`, `-Dtrailwatch.stack.dir=${stateDir}`];
}

function isMarked(commandLine: string, name: ComponentName, stateDir: string): boolean {
  const [component, dir] = markerArgs(name, stateDir);
  return commandLine.includes(`${component} `) && commandLine.includes(`${dir} `);
}

/** The command line of a process (arguments joined by spaces, with a trailing space), or null if unknown. */
function commandLineOf(pid: number): string | null {
  if (process.platform === 'linux') {
    try {
      return `${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')} `;
    } catch {
      return null;
    }
  }
  try {
    return `${execFileSync('ps', ['-ww', '-o', 'args=', '-p', String(pid)], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()} `;
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  if (process.platform === 'linux') {
    try {
      // A zombie has exited; only its parent has not collected it yet.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
    } catch {
      return false;
    }
  }
  return true;
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Live processes of this stack (by their marker arguments), including ones whose pid file was lost. */
function findStackProcesses(name: ComponentName, stateDir: string): number[] {
  const found: number[] = [];
  if (process.platform === 'linux') {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const pid = Number(entry);
      const commandLine = commandLineOf(pid);
      if (commandLine && isMarked(commandLine, name, stateDir) && isAlive(pid)) found.push(pid);
    }
    return found;
  }
  try {
    const table = execFileSync('ps', ['-ww', '-eo', 'pid=,args='], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    for (const line of table.split('\n')) {
      const match = /^\s*(\d+)\s+(.*)$/.exec(line);
      if (match?.[1] && match[2] !== undefined && isMarked(`${match[2]} `, name, stateDir)) found.push(Number(match[1]));
    }
  } catch {
    // no ps: rely on pid files alone
  }
  return found;
}

async function readPid(file: string): Promise<number | null> {
  try {
    const pid = Number.parseInt((await readFile(file, 'utf8')).trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * The pid of the component's running process, or null. A pid file that points at a dead process
 * (or at a process that is not ours) is removed; a running process of ours whose pid file was lost
 * is adopted again.
 */
async function runningPid(c: Component, stateDir: string, log: (line: string) => void): Promise<number | null> {
  const pid = await readPid(c.pidFile);
  if (pid !== null) {
    const commandLine = isAlive(pid) ? commandLineOf(pid) : null;
    if (isAlive(pid) && (commandLine === null || isMarked(commandLine, c.name, stateDir))) return pid;
    log(`removing stale pid file ${c.pidFile} (pid ${pid} is not running)`);
    await rm(c.pidFile, { force: true });
  }
  const [orphan] = findStackProcesses(c.name, stateDir);
  if (orphan === undefined) return null;
  log(`found ${c.label} running as pid ${orphan} without a pid file; adopting it`);
  await writeFile(c.pidFile, `${orphan}\n`);
  return orphan;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // not a group leader any more, or gone
  }
  try {
    process.kill(pid, signal);
  } catch {
    // gone
  }
}

/** SIGTERM to the process group, wait for a clean exit, SIGKILL after the timeout. Returns how it ended. */
async function stopProcess(pid: number, timeoutMs: number): Promise<'exited' | 'killed'> {
  signalGroup(pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive(pid) && !groupAlive(pid)) return 'exited';
    await sleep(100);
  }
  signalGroup(pid, 'SIGKILL');
  for (let i = 0; i < 50 && (isAlive(pid) || groupAlive(pid)); i++) await sleep(100);
  return 'killed';
}

interface Started {
  pid: number;
  /** performance.now() at spawn. */
  at: number;
  child: ChildProcess;
  exit: { code: number | null; signal: NodeJS.Signals | null } | null;
}

/** Starts a JVM in its own session and process group, output to `outFile`; it outlives this process. */
async function spawnDetached(java: JavaRuntime, args: string[], cwd: string, outFile: string, label: string): Promise<Started> {
  const fd = openSync(outFile, 'w');
  let child: ChildProcess;
  try {
    child = spawn(java.bin, args, { cwd, detached: true, stdio: ['ignore', fd, fd], env: process.env });
  } finally {
    closeSync(fd);
  }
  const pid = child.pid;
  if (pid === undefined) {
    const err = await new Promise<Error>((r) => child.once('error', r));
    throw new TrailwatchError(ErrorCodes.STACK, `could not start ${label} with ${java.bin}: ${errorMessage(err)}`, {
      fault: 'external',
      cause: err,
    });
  }
  const started: Started = { pid, at: performance.now(), child, exit: null };
  child.on('exit', (code, signal) => {
    started.exit = { code, signal };
  });
  child.unref();
  return started;
}

function tail(file: string, lines: number): string {
  try {
    const text = readFileSync(file, 'utf8').trimEnd();
    return text === '' ? '' : text.split('\n').slice(-lines).join('\n');
  } catch {
    return '';
  }
}

function startFailure(c: Component, reason: string): TrailwatchError {
  const logText = tail(c.logFile, 400);
  const lastError = logText.split('\n').findLast((line) => /\b(ERROR|FATAL|SEVERE)\b/.test(line));
  const parts = [`${c.label} ${reason}; see ${c.logFile} (JVM output: ${c.outFile})`];
  if (lastError) parts.push(`last error logged: ${lastError.trim()}`);
  for (const file of [c.outFile, c.logFile]) {
    const text = tail(file, DEFAULTS.logTailLines);
    if (text !== '') parts.push(`--- last lines of ${file}:\n${text}`);
  }
  return new TrailwatchError(ErrorCodes.STACK, parts.join('\n'), {
    fault: 'external',
    details: { logFile: c.logFile, outFile: c.outFile },
  });
}

/** Waits until the component answers, failing fast when its process dies. */
async function waitHealthy(c: Component, pid: number, started: Started | null, deadline: number): Promise<void> {
  for (;;) {
    if (await c.healthy()) return;
    if (started?.exit) {
      const how = started.exit.signal ? `signal ${started.exit.signal}` : `code ${started.exit.code}`;
      throw startFailure(c, `exited with ${how} while starting`);
    }
    if (!started && !isAlive(pid)) throw startFailure(c, `(pid ${pid}) exited while starting`);
    if (Date.now() > deadline) throw startFailure(c, `did not become healthy within ${Math.round(DEFAULTS.startTimeoutMs / 1000)} s`);
    await sleep(DEFAULTS.pollIntervalMs);
  }
}

/** Null when the port can be bound on 127.0.0.1, else the error code (EADDRINUSE, EACCES, …). */
function portProblem(port: number): Promise<string | null> {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => resolvePort(err.code ?? 'EUNKNOWN'));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolvePort(null)));
  });
}

async function checkPorts(c: Component): Promise<void> {
  for (const { port, what, env } of c.ports) {
    const problem = await portProblem(port);
    if (problem === null) continue;
    const why =
      problem === 'EADDRINUSE' ? 'is already in use by a program that is not this trailwatch stack' : `cannot be used (${problem})`;
    throw new TrailwatchError(
      ErrorCodes.STACK_PREREQUISITE,
      `port ${port} on 127.0.0.1, wanted for ${what}, ${why}; stop that program or pick a free port with ${env}=<port>`,
      { fault: 'user', details: { port, env } },
    );
  }
}

/** One stack command at a time per state dir: a lock file holding the owner's pid. */
async function acquireLock(stateDir: string, log: (line: string) => void): Promise<() => Promise<void>> {
  const file = join(stateDir, '.lock');
  const deadline = Date.now() + DEFAULTS.startTimeoutMs;
  let told = false;
  for (;;) {
    try {
      const handle = await open(file, 'wx');
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return () => rm(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = await readPid(file);
    if (owner === null || !isAlive(owner)) {
      await rm(file, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new TrailwatchError(ErrorCodes.STACK, `another trailwatch stack command (pid ${owner}) holds ${file}; wait for it or stop it`, {
        fault: 'user',
        canRetry: true,
      });
    }
    if (!told) log(`waiting for another trailwatch stack command (pid ${owner}) to finish…`);
    told = true;
    await sleep(DEFAULTS.pollIntervalMs);
  }
}

async function readRecord(stateDir: string): Promise<StackRecord | null> {
  try {
    return JSON.parse(await readFile(join(stateDir, 'stack.json'), 'utf8')) as StackRecord;
  } catch {
    return null;
  }
}

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

// ---------------------------------------------------------------------------------------------
// API

/**
 * Starts Kafka and Apicurio Registry (fetching them first if needed) and waits until both answer;
 * reuses them when they already run. The processes keep running after this returns.
 */
export async function stackUp(options: StackOptions = {}): Promise<StackInfo> {
  const o = resolveStackOptions(options);
  const stateDir = stateDirOf(o);
  await mkdir(join(stateDir, 'logs'), { recursive: true });
  const release = await acquireLock(stateDir, o.log);
  try {
    return await up(o, stateDir);
  } finally {
    await release();
  }
}

async function up(o: ResolvedOptions, stateDir: string): Promise<StackInfo> {
  const t0 = performance.now();
  const record = await readRecord(stateDir);
  const comps = components(stateDir, o);
  const running = {
    kafka: await runningPid(comps.kafka, stateDir, o.log),
    registry: await runningPid(comps.registry, stateDir, o.log),
  };
  const result = (kafkaPid: number, registryPid: number, reused: boolean, secure: boolean): StackInfo => ({
    brokers: brokersFor(o.kafkaPort),
    registryUrl: registryUrlFor(o.registryPort),
    kafkaPid,
    registryPid,
    reused,
    stateDir,
    logs: { kafka: comps.kafka.logFile, registry: comps.registry.logFile },
    secure: secure ? secureListeners(stateDir, o.kafkaPort) : null,
  });

  if ((running.kafka !== null || running.registry !== null) && record) {
    const moved = (['kafkaPort', 'controllerPort', 'registryPort'] as const).filter((k) => record[k] !== o[k]);
    if (moved.length > 0) {
      throw new TrailwatchError(
        ErrorCodes.STACK,
        `the local stack in ${stateDir} already runs with ${moved.map((k) => `${k} ${record[k]}`).join(', ')}, ` +
          `not ${moved.map((k) => `${k} ${o[k]}`).join(', ')}; stop it first (trailwatch stack down) or use the same ports`,
        { fault: 'user' },
      );
    }
  }

  const deadline = Date.now() + DEFAULTS.startTimeoutMs;
  if (running.kafka !== null && running.registry !== null) {
    const { kafka: kafkaPid, registry: registryPid } = running;
    await Promise.all([waitHealthy(comps.kafka, kafkaPid, null, deadline), waitHealthy(comps.registry, registryPid, null, deadline)]);
    o.log(`reusing the running local stack (Kafka pid ${kafkaPid}, registry pid ${registryPid})`);
    const secure = record?.secure === true;
    if (!secure) o.log('this Kafka was started without the SASL and TLS listeners; restart the stack (down, then up) to get them');
    return result(kafkaPid, registryPid, true, secure);
  }

  // Fail on what the user must fix before downloading anything.
  for (const name of ['kafka', 'registry'] as const) if (running[name] === null) await checkPorts(comps[name]);

  const kafkaWhat = `Apache Kafka ${o.kafkaVersion}`;
  const registryWhat = `Apicurio Registry ${o.registryVersion}`;
  const kafkaJava = await ensureJava(DEFAULTS.kafkaMinJava, o.cacheDir, o.log, kafkaWhat);
  const kafkaDist = await ensureKafkaDist(o.cacheDir, o.kafkaVersion, o.log, kafkaJava);
  const registryDist = await ensureRegistryDist(o.cacheDir, o.registryVersion, o.log, kafkaJava);
  const registryJava = await ensureJava(registryDist.javaMajor, o.cacheDir, o.log, registryWhat);

  const spawned: { c: Component; started: Started }[] = [];
  let pendingScram: (() => Promise<void>) | null = null;
  // A registry left running keeps its record; Kafka started now always has the secure listeners.
  const secure = running.kafka === null || record?.secure === true;
  try {
    if (running.kafka === null) {
      const layout = kafkaLayout(stateDir);
      const prepared = await prepareKafka(layout, {
        kafkaPort: o.kafkaPort,
        controllerPort: o.controllerPort,
        java: kafkaJava,
        dist: kafkaDist,
        log: o.log,
      });
      if (prepared.scramPending) {
        const options = { kafkaPort: o.kafkaPort, java: kafkaJava, dist: kafkaDist, secure: prepared.secure, log: o.log };
        pendingScram = () => addScramUsers(layout, options);
      }
      o.log(
        `starting ${kafkaWhat} on 127.0.0.1:${o.kafkaPort} (SASL ${saslPortFor(o.kafkaPort)}, TLS ${tlsPortFor(o.kafkaPort)}; ` +
          `Java ${kafkaJava.version}; log ${layout.logFile})`,
      );
      const started = await spawnDetached(
        kafkaJava,
        kafkaJavaArgs(layout, kafkaDist, kafkaJava, markerArgs('kafka', stateDir)),
        layout.dir,
        layout.outFile,
        'Kafka',
      );
      spawned.push({ c: comps.kafka, started });
      await writeFile(comps.kafka.pidFile, `${started.pid}\n`);
    }
    if (running.registry === null) {
      const layout = registryLayout(stateDir);
      await prepareRegistry(layout);
      o.log(`starting ${registryWhat} on 127.0.0.1:${o.registryPort} (Java ${registryJava.version}; log ${layout.logFile})`);
      const started = await spawnDetached(
        registryJava,
        registryJavaArgs(layout, registryDist, registryJava, o.registryPort, markerArgs('registry', stateDir)),
        layout.dir,
        layout.outFile,
        'Apicurio Registry',
      );
      spawned.push({ c: comps.registry, started });
      await writeFile(comps.registry.pidFile, `${started.pid}\n`);
    }
    await writeFile(
      join(stateDir, 'stack.json'),
      `${JSON.stringify(
        {
          kafkaPort: o.kafkaPort,
          controllerPort: o.controllerPort,
          registryPort: o.registryPort,
          kafkaVersion: o.kafkaVersion,
          registryVersion: o.registryVersion,
          startedAt: new Date().toISOString(),
          java: { kafka: `${kafkaJava.version} (${kafkaJava.bin})`, registry: `${registryJava.version} (${registryJava.bin})` },
          secure,
        } satisfies StackRecord,
        null,
        2,
      )}\n`,
    );

    const pids = { ...running };
    for (const { c, started } of spawned) pids[c.name] = started.pid;
    await Promise.all(
      (['kafka', 'registry'] as const).map(async (name) => {
        const pid = pids[name];
        if (pid === null) return;
        const started = spawned.find((s) => s.c.name === name)?.started ?? null;
        await waitHealthy(comps[name], pid, started, deadline);
        o.log(`${comps[name].label} is ready (pid ${pid}${started ? `, ${seconds(started.at)} after its start` : ''})`);
      }),
    );
    if (pids.kafka === null || pids.registry === null) throw new TrailwatchError(ErrorCodes.INTERNAL, 'stack started without both pids');
    if (pendingScram) await pendingScram();
    o.log(`local stack ready in ${seconds(t0)}: brokers 127.0.0.1:${o.kafkaPort}, registry ${registryUrlFor(o.registryPort)}`);
    return result(pids.kafka, pids.registry, false, secure);
  } catch (err) {
    // Never leave a half-started stack behind.
    await Promise.all(
      spawned.map(async ({ c, started }) => {
        await stopProcess(started.pid, 5_000);
        await rm(c.pidFile, { force: true });
      }),
    );
    if (running.kafka === null && running.registry === null) await rm(join(stateDir, 'stack.json'), { force: true });
    if (isTrailwatchError(err)) throw err;
    throw new TrailwatchError(ErrorCodes.STACK, `starting the local stack failed: ${errorMessage(err)}`, { cause: err });
  }
}

/** Stops the stack's processes (SIGTERM, then SIGKILL after a timeout) and removes their pid files. */
export async function stackDown(options: StackOptions = {}): Promise<{ stopped: string[] }> {
  const o = resolveStackOptions(options);
  const stateDir = stateDirOf(o);
  if (!existsSync(stateDir)) return { stopped: [] };
  const record = await readRecord(stateDir);
  const comps = components(stateDir, record ?? o);
  const stopped: string[] = [];
  await Promise.all(
    (['registry', 'kafka'] as const).map(async (name) => {
      const c = comps[name];
      const pid = await runningPid(c, stateDir, o.log);
      const t0 = performance.now();
      if (pid !== null) {
        const how = await stopProcess(pid, DEFAULTS.stopTimeoutMs);
        o.log(
          how === 'exited'
            ? `stopped ${c.label} (pid ${pid}) in ${seconds(t0)}`
            : `${c.label} (pid ${pid}) did not exit within ${DEFAULTS.stopTimeoutMs / 1000} s of SIGTERM; killed it`,
        );
        stopped.push(name);
      }
      // Anything else of ours still alive (a second copy whose pid file was overwritten) goes too.
      for (const other of findStackProcesses(name, stateDir)) await stopProcess(other, DEFAULTS.stopTimeoutMs);
      await rm(c.pidFile, { force: true });
    }),
  );
  await rm(join(stateDir, 'stack.json'), { force: true });
  if (stopped.length === 0) o.log('the local stack was not running');
  return { stopped: stopped.sort() };
}

/** Whether the stack's processes run and answer. Cleans up pid files of dead processes. */
export async function stackStatus(options: StackOptions = {}): Promise<StackStatus> {
  const o = resolveStackOptions(options);
  const stateDir = stateDirOf(o);
  const record = existsSync(stateDir) ? await readRecord(stateDir) : null;
  const ports = record ?? o;
  const comps = components(stateDir, ports);
  const quiet = (): void => {};
  const [kafkaPid, registryPid] = existsSync(stateDir)
    ? await Promise.all([runningPid(comps.kafka, stateDir, quiet), runningPid(comps.registry, stateDir, quiet)])
    : [null, null];
  const [kafkaOk, registryOk] = await Promise.all([
    kafkaPid === null ? false : comps.kafka.healthy(),
    registryPid === null ? false : comps.registry.healthy(),
  ]);
  return {
    running: kafkaOk && registryOk,
    kafka: { pid: kafkaPid, healthy: kafkaOk },
    registry: { pid: registryPid, healthy: registryOk },
    brokers: brokersFor(ports.kafkaPort),
    registryUrl: registryUrlFor(ports.registryPort),
    secure: kafkaOk && record?.secure === true ? secureListeners(stateDir, ports.kafkaPort) : null,
  };
}
