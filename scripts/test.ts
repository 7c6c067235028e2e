/**
 * `npm test`: finds or starts Kafka and a schema registry, runs every test file with node's test
 * runner against them (KAFKA_BROKERS, SCHEMA_REGISTRY_URL), stops what it started, and exits with
 * the runner's code.
 *
 * Where the stack comes from, first match wins:
 *   1. KAFKA_BROKERS and SCHEMA_REGISTRY_URL already set: used as given, nothing started or stopped.
 *   2. A Docker engine answers (or TRAILWATCH_TEST_STACK=docker): testcontainers starts
 *      apache/kafka and apicurio/apicurio-registry, removed again afterwards.
 *   3. Otherwise (or TRAILWATCH_TEST_STACK=local): the local stack (src/stack/local.ts); a stack that
 *      was already running is reused and left running.
 *
 * With the local stack, its secure listeners are passed on too (TRAILWATCH_TEST_SASL_BROKERS,
 * TRAILWATCH_TEST_TLS_BROKERS, TRAILWATCH_TEST_CA_FILE, TRAILWATCH_TEST_SASL_USERNAME,
 * TRAILWATCH_TEST_SASL_PASSWORD_FILE); elsewhere set them yourself, or the tests that need them skip.
 *
 * Extra arguments go to the runner: paths or globs replace the default "test/**\/*.test.ts", flags
 * (e.g. --test-name-pattern=registry) are added. Example: npm test -- test/stack/local.test.ts
 */

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { homedir, constants as osConstants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage } from '../src/errors.ts';
import { kafkaHealthy } from '../src/stack/kafka.ts';
import { type SecureListeners, stackDown, stackUp } from '../src/stack/local.ts';

// kafkajs 2.2.4 schedules a negative timeout on every connection, which Node 24 reports as a
// TimeoutNegativeWarning (kafkajs issue #1751): harmless noise. Hidden here (the stack's health
// probes run in this process) and in the test processes (NODE_OPTIONS below).
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = ((warning: string | Error, ...rest: unknown[]) => {
  const type = typeof rest[0] === 'string' ? rest[0] : (rest[0] as { type?: string } | undefined)?.type;
  if (type === 'TimeoutNegativeWarning') return;
  (emitWarning as (w: string | Error, ...r: unknown[]) => void)(warning, ...rest);
}) as typeof process.emitWarning;

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

const TEST = {
  /** Default test files. */
  pattern: 'test/**/*.test.ts',
  /**
   * Run after the others, alone: they kill detectors and restart the broker, which would break
   * tests running beside them.
   */
  soloPattern: 'test/**/*.solo.ts',
  /** Test files run side by side (the machine may have 2 cores). */
  concurrency: 2,
  /** Container images for the Docker path. */
  kafkaImage: 'apache/kafka:4.1.2',
  registryImage: 'apicurio/apicurio-registry:3.3.3',
  /** How long the Docker engine gets to answer, and containers to become ready, in ms. */
  dockerProbeMs: 15_000,
  containerStartMs: 180_000,
} as const satisfies Record<string, string | number>;

interface Stack {
  brokers: string[];
  registryUrl: string;
  /** The local stack, whose broker a solo test may restart. */
  local?: boolean;
  /** How the stack was obtained, for the start line. */
  how: string;
  /** The local stack's SASL and TLS listeners, when it has them. */
  secure?: SecureListeners | null;
  /** Stops what this script started; a no-op for a stack it only found. */
  stop: () => Promise<void>;
}

function fromEnvironment(): Stack | null {
  const brokers = process.env.KAFKA_BROKERS?.trim();
  const registryUrl = process.env.SCHEMA_REGISTRY_URL?.trim();
  if (!brokers && !registryUrl) return null;
  if (!brokers || !registryUrl) {
    throw new Error('set both KAFKA_BROKERS and SCHEMA_REGISTRY_URL to test against an existing stack, or neither to have one started');
  }
  return {
    brokers: brokers.split(',').map((b) => b.trim()),
    registryUrl,
    how: 'given by KAFKA_BROKERS / SCHEMA_REGISTRY_URL',
    stop: async () => {},
  };
}

/** True when a Docker (or compatible) engine answers. Cheap when there is plainly none. */
async function dockerAvailable(): Promise<boolean> {
  const choice = process.env.TRAILWATCH_TEST_STACK;
  if (choice === 'local') return false;
  const forced = choice === 'docker';
  const home = homedir();
  const runtimeDir = process.env.XDG_RUNTIME_DIR;
  const hints = [
    '/var/run/docker.sock',
    join(home, '.docker', 'run', 'docker.sock'),
    join(home, '.docker', 'desktop', 'docker.sock'),
    join(home, '.colima', 'default', 'docker.sock'),
    join(home, '.rd', 'docker.sock'),
    join(home, '.testcontainers.properties'),
    ...(runtimeDir ? [join(runtimeDir, 'docker.sock'), join(runtimeDir, 'podman', 'podman.sock')] : []),
  ];
  if (!forced && !process.env.DOCKER_HOST && !hints.some((p) => existsSync(p))) return false;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${TEST.dockerProbeMs} ms`)), TEST.dockerProbeMs);
    });
    try {
      await Promise.race([getContainerRuntimeClient(), timeout]);
    } finally {
      clearTimeout(timer);
    }
    return true;
  } catch (err) {
    if (forced) throw new Error(`TRAILWATCH_TEST_STACK=docker, but no Docker engine answers: ${errorMessage(err)}`);
    process.stderr.write(`test: a Docker socket exists but no engine answers (${errorMessage(err)}); using the local stack\n`);
    return false;
  }
}

/**
 * Kafka (KRaft, one combined node) and Apicurio Registry in containers. Kafka must advertise the
 * host port Docker mapped, which is known only once the container runs, so the container waits for
 * a start script that exports the advertised listener and then runs the image's own entry point
 * (the way Testcontainers' Kafka modules do it).
 */
async function fromContainers(): Promise<Stack> {
  const { GenericContainer, Wait } = await import('testcontainers');
  const startScript = '/tmp/trailwatch-start.sh';
  const kafkaContainer = new GenericContainer(TEST.kafkaImage)
    .withExposedPorts(9092)
    .withEnvironment({
      CLUSTER_ID: 'dHJhaWx3YXRjaC10ZXN0cw',
      KAFKA_NODE_ID: '1',
      KAFKA_PROCESS_ROLES: 'broker,controller',
      KAFKA_LISTENERS: 'PLAINTEXT://0.0.0.0:9092,BROKER://0.0.0.0:9093,CONTROLLER://0.0.0.0:9094',
      KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: 'PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT',
      KAFKA_INTER_BROKER_LISTENER_NAME: 'BROKER',
      KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
      KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9094',
      KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
      KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR: '1',
      KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR: '1',
      KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
      KAFKA_HEAP_OPTS: '-Xms256m -Xmx768m',
    })
    .withCommand(['sh', '-c', `echo trailwatch-waiting-for-start; while [ ! -f ${startScript} ]; do sleep 0.1; done; . ${startScript}`])
    .withWaitStrategy(Wait.forLogMessage('trailwatch-waiting-for-start'));
  const registryContainer = new GenericContainer(TEST.registryImage)
    .withExposedPorts(8080)
    .withEnvironment({ APICURIO_CCOMPAT_LEGACY_ID_MODE_ENABLED: 'false' })
    .withWaitStrategy(Wait.forHttp('/apis/ccompat/v7/subjects', 8080).forStatusCode(200))
    .withStartupTimeout(TEST.containerStartMs);

  const [kafka, registry] = await Promise.all([kafkaContainer.start(), registryContainer.start()]);
  const stop = async (): Promise<void> => {
    await Promise.allSettled([kafka.stop(), registry.stop()]);
  };
  try {
    const brokers = [`${kafka.getHost()}:${kafka.getMappedPort(9092)}`];
    await kafka.copyContentToContainer([
      {
        content: `export KAFKA_ADVERTISED_LISTENERS=PLAINTEXT://${brokers[0]},BROKER://localhost:9093\nexec /etc/kafka/docker/run\n`,
        target: startScript,
        mode: 0o755,
      },
    ]);
    const deadline = Date.now() + TEST.containerStartMs;
    while (!(await kafkaHealthy(brokers))) {
      if (Date.now() > deadline) throw new Error(`Kafka in ${TEST.kafkaImage} did not answer on ${brokers[0]} in time`);
      await new Promise((r) => setTimeout(r, 250));
    }
    const registryUrl = `http://${registry.getHost()}:${registry.getMappedPort(8080)}/apis/ccompat/v7`;
    return { brokers, registryUrl, how: `containers (${TEST.kafkaImage}, ${TEST.registryImage})`, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

async function fromLocalStack(): Promise<Stack> {
  const info = await stackUp();
  return {
    brokers: info.brokers,
    registryUrl: info.registryUrl,
    local: true,
    how: info.reused ? `the local stack, already running (left running; logs in ${info.stateDir}/logs)` : 'the local stack',
    secure: info.secure,
    stop: info.reused
      ? async () => {}
      : async () => {
          await stackDown({ log: () => {} });
        },
  };
}

/** Splits extra arguments into file patterns (paths, globs) and runner flags. */
const looksLikeFile = (a: string) => !a.startsWith('-') && (a.includes('/') || a.includes('*') || /\.[cm]?[jt]s$/.test(a));

/** The runs to make: the given files, or the default suite and then the solo tests on their own. */
function runs(extra: string[]): string[][] {
  const files = extra.filter(looksLikeFile);
  const flags = extra.filter((a) => !looksLikeFile(a));
  if (files.length > 0) return [['--test', `--test-concurrency=${TEST.concurrency}`, ...flags, ...files]];
  return [
    ['--test', `--test-concurrency=${TEST.concurrency}`, ...flags, TEST.pattern],
    ['--test', '--test-concurrency=1', ...flags, TEST.soloPattern],
  ];
}

/** The variables test/helpers/stack.ts#secureTestStack reads; ones already set win. */
function secureEnv(secure: SecureListeners | null | undefined): Record<string, string> {
  if (!secure) return {};
  return {
    TRAILWATCH_TEST_SASL_BROKERS: secure.saslBrokers.join(','),
    TRAILWATCH_TEST_TLS_BROKERS: secure.tlsBrokers.join(','),
    TRAILWATCH_TEST_CA_FILE: secure.caFile,
    TRAILWATCH_TEST_SASL_USERNAME: secure.username,
    TRAILWATCH_TEST_SASL_PASSWORD_FILE: secure.passwordFile,
  };
}

async function runTests(stack: Stack, extra: string[]): Promise<number> {
  for (const args of runs(extra)) {
    const code = await runOnce(stack, args);
    if (code !== 0) return code;
  }
  return 0;
}

function runOnce(stack: Stack, args: string[]): Promise<number> {
  const env = {
    ...secureEnv(stack.secure),
    ...process.env,
    ...(stack.local ? { TRAILWATCH_TEST_LOCAL_STACK: '1' } : {}),
    KAFKA_BROKERS: stack.brokers.join(','),
    SCHEMA_REGISTRY_URL: stack.registryUrl,
    KAFKAJS_NO_PARTITIONER_WARNING: '1',
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --disable-warning=TimeoutNegativeWarning`.trim(),
  };
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: 'inherit' });
  const forward = (signal: NodeJS.Signals) => () => {
    child.kill(signal);
  };
  process.on('SIGINT', forward('SIGINT'));
  process.on('SIGTERM', forward('SIGTERM'));
  return new Promise((resolve) => {
    child.on('error', (err) => {
      process.stderr.write(`test: could not run the test runner: ${errorMessage(err)}\n`);
      resolve(1);
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 + (osConstants.signals[signal] ?? 0) : 1)));
  });
}

async function main(): Promise<number> {
  const extra = process.argv.slice(2);
  const started = performance.now();
  let stack: Stack;
  try {
    stack = fromEnvironment() ?? ((await dockerAvailable()) ? await fromContainers() : await fromLocalStack());
  } catch (err) {
    process.stderr.write(`test: could not get a Kafka + schema registry stack to test against:\n${errorMessage(err)}\n`);
    return 1;
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  process.stderr.write(
    `test: stack ready in ${seconds} s, ${stack.how}: KAFKA_BROKERS=${stack.brokers.join(',')} SCHEMA_REGISTRY_URL=${stack.registryUrl}\n`,
  );

  let code = 1;
  try {
    code = await runTests(stack, extra);
  } finally {
    // Quietly: the runner's summary stays the last thing printed unless stopping fails.
    try {
      await stack.stop();
    } catch (err) {
      process.stderr.write(`test: stopping the stack failed: ${errorMessage(err)}\n`);
      code = code === 0 ? 1 : code;
    }
  }
  return code;
}

process.exit(await main());
