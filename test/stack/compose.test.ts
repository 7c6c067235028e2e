/**
 * docker-compose.yml and the Dockerfile, checked statically: no Docker engine runs where the tests
 * run, so what a user relies on when reading them is checked here instead. Every wait is on a
 * healthcheck (or on a one-shot setup finishing); the addresses, ports and variables agree with
 * what the broker advertises and what trailwatch's own config loader reads; images are pinned to
 * the versions the local stack fetches; the image installs exactly the lock file and runs as a
 * user that is not root, with a healthcheck on /healthz.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { parse } from 'yaml';
import { loadConfig } from '../../src/config/load.ts';
import { configSchema } from '../../src/config/schema.ts';
import { saslPortFor, tlsPortFor } from '../../src/stack/kafka.ts';
import { resolveStackOptions } from '../../src/stack/local.ts';
import { registryUrlFor } from '../../src/stack/registry.ts';
import { REPO_ROOT } from '../helpers/shared.ts';

interface Healthcheck {
  test?: string | string[];
  interval?: string;
  timeout?: string;
  retries?: number;
}

interface Dependency {
  condition?: string;
  required?: boolean;
}

interface Service {
  image?: string;
  build?: unknown;
  command?: string | string[];
  profiles?: string[];
  environment?: Record<string, string | number | boolean | null> | string[];
  ports?: string[];
  volumes?: string[];
  depends_on?: Record<string, Dependency> | string[];
  healthcheck?: Healthcheck;
  restart?: string;
}

interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

const compose = parse(readFileSync(join(REPO_ROOT, 'docker-compose.yml'), 'utf8')) as Compose;
const services = compose.services;
const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');
const stack = resolveStackOptions();

function service(name: string): Service {
  const s = services[name];
  assert.ok(s, `docker-compose.yml has no service ${name}`);
  return s;
}

/** A service's environment as the container sees it (compose passes every value as a string). */
function envOf(name: string): Record<string, string> {
  const env = service(name).environment ?? {};
  assert.ok(!Array.isArray(env), `${name}: environment as a map, so each variable is named once`);
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v ?? '')]));
}

/** What compose makes of a value when none of its variables is set: `${VAR:-default}` → default, `$$` → `$`. */
function withDefaults(value: string): string {
  return value.replace(/\$\{[A-Z0-9_]+:-([^}]*)\}/g, '$1').replaceAll('$$', '$');
}

interface Listener {
  name: string;
  host: string;
  port: number;
  /** The port as written, `${VAR:-9092}` included: what the published port must use too. */
  rawPort: string;
}

/** `NAME://host:port,…` (host may be empty). */
function listeners(value: string): Listener[] {
  return value.split(',').map((entry) => {
    const m = /^([A-Z_]+):\/\/([^:]*):(.+)$/.exec(entry.trim());
    assert.ok(m?.[1] && m[3], `listener ${JSON.stringify(entry)} is NAME://host:port`);
    const port = Number(withDefaults(m[3]));
    assert.ok(Number.isInteger(port), `listener ${entry}: port`);
    return { name: m[1], host: m[2] ?? '', port, rawPort: m[3] };
  });
}

interface Published {
  ip: string;
  /** Host side as written, e.g. `${TRAILWATCH_KAFKA_PORT:-9092}`. */
  rawHost: string;
  container: number;
}

function published(name: string): Published[] {
  return (service(name).ports ?? []).map((p) => {
    const m = /^(\d+\.\d+\.\d+\.\d+):(\$\{[A-Z0-9_]+:-\d+\}|\d+):(\d+)$/.exec(p);
    assert.ok(m?.[1] && m[2] && m[3], `${name}: port ${JSON.stringify(p)} is ip:host:container`);
    return { ip: m[1], rawHost: m[2], container: Number(m[3]) };
  });
}

function healthcheckText(name: string): string {
  const t = service(name).healthcheck?.test;
  return Array.isArray(t) ? t.join(' ') : (t ?? '');
}

function commandText(name: string): string {
  const c = service(name).command;
  return Array.isArray(c) ? c.join('\n') : (c ?? '');
}

/** Runs once and exits: what others wait on with service_completed_successfully. */
function isOneShot(s: Service): boolean {
  return s.restart === 'no' && s.healthcheck === undefined && (s.ports ?? []).length === 0;
}

function imageTag(image: string): string {
  return image.slice(image.lastIndexOf(':') + 1);
}

/** The Dockerfile's instructions, continuation lines joined, comments dropped. */
function instructions(text: string): { op: string; args: string }[] {
  const out: { op: string; args: string }[] = [];
  let pending = '';
  for (const line of text.split('\n')) {
    if (pending === '' && (line.trim() === '' || line.trimStart().startsWith('#'))) continue;
    pending += line.endsWith('\\') ? `${line.slice(0, -1)} ` : line;
    if (line.endsWith('\\')) continue;
    const m = /^\s*([A-Z]+)\s+(.*)$/.exec(pending);
    assert.ok(m?.[1] && m[2] !== undefined, `Dockerfile: cannot read ${JSON.stringify(pending)}`);
    out.push({ op: m[1], args: m[2].trim() });
    pending = '';
  }
  return out;
}

describe('docker-compose.yml', () => {
  test('every dependency is waited for on its healthcheck, or on a one-shot setup finishing', () => {
    let checked = 0;
    for (const [name, s] of Object.entries(services)) {
      if (s.depends_on === undefined) continue;
      assert.ok(!Array.isArray(s.depends_on), `${name}: depends_on with a condition per dependency, not a list (a list waits for nothing)`);
      for (const [dep, spec] of Object.entries(s.depends_on)) {
        const target = service(dep);
        if (spec.condition === 'service_healthy') {
          const hc = target.healthcheck;
          assert.ok(hc?.test && hc.test !== 'NONE', `${name} waits for ${dep} to be healthy: ${dep} needs a healthcheck`);
          assert.ok(hc.interval && hc.timeout && hc.retries, `${dep}: healthcheck interval, timeout and retries`);
        } else {
          assert.equal(spec.condition, 'service_completed_successfully', `${name} → ${dep}: service_healthy (or a one-shot's completion)`);
          assert.ok(isOneShot(target), `${name} waits for ${dep} to complete: ${dep} must run once (restart "no", no ports)`);
        }
        // A service that always runs may wait for one behind a profile only when it does not need it.
        const behindProfile = (target.profiles ?? []).length > 0 && (s.profiles ?? []).length === 0;
        if (behindProfile) assert.equal(spec.required, false, `${name} → ${dep}: ${dep} runs only in its profile, so required: false`);
        if (spec.required === false) assert.ok(behindProfile, `${name} → ${dep}: required: false only for a dependency behind a profile`);
        checked++;
      }
    }
    assert.ok(checked >= 5, `expected the stack's dependencies, found ${checked}`);
  });

  test('every long-running service has a healthcheck; one-shot ones only run in a profile', () => {
    for (const [name, s] of Object.entries(services)) {
      if (isOneShot(s)) {
        assert.ok((s.profiles ?? []).length > 0, `${name}: a one-shot service belongs to a profile`);
        continue;
      }
      assert.ok(Array.isArray(s.healthcheck?.test) && s.healthcheck.test.length > 1, `${name}: a healthcheck (exec form)`);
      assert.equal(s.restart, 'unless-stopped', `${name}: restarted unless stopped`);
    }
    assert.ok(/\/healthz/.test(healthcheckText('trailwatch')), 'trailwatch: its healthcheck asks /healthz');
  });

  test('images are pinned, at the versions the local stack and the test runner use', () => {
    const images = Object.entries(services).flatMap(([name, s]) => (s.image ? [{ name, image: s.image }] : []));
    for (const { name, image } of images) {
      assert.match(image, /^[a-z0-9./-]+:\d+\.\d+\.\d+$/, `${name}: image ${image} pinned to a release, not a moving tag`);
    }
    const kafkaImages = images.filter((i) => i.image.startsWith('apache/kafka:'));
    assert.ok(kafkaImages.length >= 1);
    for (const { name, image } of kafkaImages) {
      assert.equal(imageTag(image), stack.kafkaVersion, `${name}: Kafka ${imageTag(image)}; the local stack fetches ${stack.kafkaVersion}`);
    }
    const registry = service('registry').image ?? '';
    assert.ok(registry.startsWith('apicurio/apicurio-registry:'));
    assert.equal(
      imageTag(registry),
      stack.registryVersion,
      `registry: Apicurio ${imageTag(registry)}; the local stack fetches ${stack.registryVersion}`,
    );

    // The Docker path of `npm test` (testcontainers) starts the same images.
    const runner = readFileSync(join(REPO_ROOT, 'scripts/test.ts'), 'utf8');
    assert.equal(/kafkaImage: '([^']+)'/.exec(runner)?.[1], service('kafka').image, 'scripts/test.ts kafkaImage');
    assert.equal(/registryImage: '([^']+)'/.exec(runner)?.[1], registry, 'scripts/test.ts registryImage');
  });

  test("the broker's listeners, advertised addresses and published ports agree, secure ones as the local stack has them", () => {
    const env = envOf('kafka');
    const own = listeners(env.KAFKA_LISTENERS ?? '');
    const secure = listeners(env.SECURE_LISTENERS ?? '');
    const all = [...own, ...secure];
    const advertised = [...listeners(env.KAFKA_ADVERTISED_LISTENERS ?? ''), ...listeners(env.SECURE_ADVERTISED_LISTENERS ?? '')];
    const protocols = new Map(
      [env.KAFKA_LISTENER_SECURITY_PROTOCOL_MAP, env.SECURE_LISTENER_SECURITY_PROTOCOL_MAP]
        .join(',')
        .split(',')
        .map((pair) => pair.split(':') as [string, string]),
    );
    const names = new Set(all.map((l) => l.name));
    assert.equal(names.size, all.length, 'listener names unique');
    assert.equal(new Set(all.map((l) => l.port)).size, all.length, 'listener ports unique');
    for (const l of all) assert.ok(protocols.has(l.name), `${l.name}: in the security protocol map`);
    for (const name of [env.KAFKA_INTER_BROKER_LISTENER_NAME, env.KAFKA_CONTROLLER_LISTENER_NAMES]) {
      assert.ok(name && names.has(name), `${name}: a listener`);
    }
    assert.ok(!advertised.some((a) => a.name === env.KAFKA_CONTROLLER_LISTENER_NAMES), 'the controller listener is not advertised');

    const ports = published('kafka');
    for (const a of advertised) {
      const l = all.find((x) => x.name === a.name);
      assert.ok(l, `advertised ${a.name} is a listener`);
      if (a.host === 'localhost') {
        // Reached from the host: published on the port it advertises, to the listener's container port.
        assert.ok(
          ports.some((p) => p.rawHost === a.rawPort && p.container === l.port),
          `${a.name}: advertised localhost:${a.rawPort} needs "127.0.0.1:${a.rawPort}:${l.port}" under ports`,
        );
      } else {
        assert.equal(a.host, 'kafka', `${a.name}: advertised by the service name`);
        assert.equal(a.port, l.port, `${a.name}: advertised at its own port inside the network`);
      }
    }

    // The secure profile: SASL_PLAINTEXT and SSL on Kafka's port + 2 and + 3, as src/stack/kafka.ts has them.
    const external = own.find((l) => l.name === 'EXTERNAL');
    assert.ok(external);
    assert.equal(protocols.get('SASL_PLAINTEXT'), 'SASL_PLAINTEXT');
    assert.equal(protocols.get('SSL'), 'SSL');
    assert.equal(secure.find((l) => l.name === 'SASL_PLAINTEXT')?.port, saslPortFor(external.port));
    assert.equal(secure.find((l) => l.name === 'SSL')?.port, tlsPortFor(external.port));
    const script = commandText('kafka');
    for (const v of ['SECURE_LISTENERS', 'SECURE_ADVERTISED_LISTENERS', 'SECURE_LISTENER_SECURITY_PROTOCOL_MAP']) {
      assert.ok(script.includes(`$$${v}`), `the broker's command adds ${v}`);
    }
    assert.match(script, /exec \/etc\/kafka\/docker\/run\s*$/, "the broker's command ends in the image's own start script");
    // What the broker's command uses is what kafka-secrets makes, in the volume both mount.
    const made = commandText('kafka-secrets');
    for (const file of ['trailwatch-secure.done', 'broker_jaas.conf', 'broker.p12', 'store.password']) {
      assert.ok(script.includes(file), `the broker's command uses ${file}`);
      assert.ok(made.includes(file), `kafka-secrets makes ${file}`);
    }
    assert.ok(made.includes('san=dns:localhost,ip:127.0.0.1'), 'the broker certificate names what the host connects to');
    assert.ok(commandText('kafka-scram').includes('/etc/kafka/secrets/password'), 'kafka-scram reads the password kafka-secrets made');
    for (const name of ['kafka', 'kafka-secrets', 'kafka-scram']) {
      assert.ok(
        (service(name).volumes ?? []).some((v) => v.startsWith('kafka-secrets:/etc/kafka/secrets')),
        `${name} mounts the kafka-secrets volume`,
      );
    }
    assert.ok(compose.volumes && 'kafka-secrets' in compose.volumes && 'kafka-data' in compose.volumes, 'named volumes declared');

    // The healthcheck asks a listener that exists.
    const probe = /--bootstrap-server localhost:(\d+)/.exec(healthcheckText('kafka'));
    assert.ok(probe?.[1] && own.some((l) => l.port === Number(probe[1])), "kafka's healthcheck uses one of its listeners");
  });

  test('trailwatch and the registry reach the broker and the registry at addresses they serve', () => {
    const internal = listeners(envOf('kafka').KAFKA_ADVERTISED_LISTENERS ?? '').filter((a) => a.host === 'kafka');
    const served = new Set(internal.map((a) => `kafka:${a.port}`));
    const tw = envOf('trailwatch');
    for (const broker of (tw.KAFKA_BROKERS ?? '').split(','))
      assert.ok(served.has(broker), `trailwatch KAFKA_BROKERS ${broker}: advertised by kafka`);
    assert.ok(served.has(envOf('registry').APICURIO_KAFKASQL_BOOTSTRAP_SERVERS ?? ''), 'registry: bootstrap servers advertised by kafka');

    const url = new URL(tw.SCHEMA_REGISTRY_URL ?? '');
    assert.equal(url.hostname, 'registry');
    assert.equal(url.pathname, new URL(registryUrlFor(1)).pathname, 'the Confluent-compatible API path the local stack serves');
    const port = Number(url.port || 80);
    assert.ok(
      published('registry').some((p) => p.container === port),
      `registry: its port ${port} (SCHEMA_REGISTRY_URL) is the one published`,
    );
    const probe = healthcheckText('registry');
    assert.ok(
      probe.includes(`/dev/tcp/127.0.0.1/${port}`) && probe.includes(`GET ${url.pathname}/subjects`),
      "registry's healthcheck asks that API",
    );
  });

  test("trailwatch's environment is valid config, and the observe port, published port and healthcheck agree", () => {
    const env = envOf('trailwatch');
    // As `trailwatch run` in the container reads it: unknown or invalid keys would throw here.
    const config = loadConfig({ env });
    assert.deepEqual(config.kafka.brokers, ['kafka:29092']);
    assert.equal(config.registry.url, env.SCHEMA_REGISTRY_URL);
    assert.equal(config.observe.host, '0.0.0.0', 'observe.host: every interface of the container, or the published port reaches nothing');
    assert.ok(config.observe.port > 0, 'observe.port: the endpoint is on');
    assert.ok(
      published('trailwatch').some((p) => p.container === config.observe.port),
      `trailwatch: observe.port ${config.observe.port} is the published one`,
    );
    assert.ok(
      healthcheckText('trailwatch').includes(`http://127.0.0.1:${config.observe.port}/healthz`),
      `trailwatch's healthcheck asks /healthz on observe.port ${config.observe.port}`,
    );
    assert.match(env.NODE_OPTIONS ?? '', /--disable-warning=TimeoutNegativeWarning/, 'NODE_OPTIONS silences the kafkajs timer warning');
  });

  test('published ports are bound to 127.0.0.1 (the endpoints have no auth)', () => {
    let count = 0;
    for (const name of Object.keys(services)) {
      for (const p of published(name)) {
        assert.equal(p.ip, '127.0.0.1', `${name}: ${p.rawHost}`);
        count++;
      }
    }
    assert.ok(count >= 5);
  });
});

describe('Dockerfile', () => {
  const steps = instructions(dockerfile);
  const index = (op: string, contains = ''): number => steps.findIndex((s) => s.op === op && s.args.includes(contains));

  test('the base image is the Node that scripts/with-node.sh fetches', () => {
    const pin = /^NODE_PIN=(\S+)$/m.exec(readFileSync(join(REPO_ROOT, 'scripts/with-node.sh'), 'utf8'))?.[1];
    assert.ok(pin, 'scripts/with-node.sh sets NODE_PIN');
    assert.equal(steps.filter((s) => s.op === 'FROM').length, 1);
    assert.equal(steps[0]?.op, 'FROM');
    assert.equal(steps[0]?.args, `node:${pin}-slim`);
  });

  test('installs exactly the lock file, then runs as a user that is not root', () => {
    const copyLock = index('COPY', 'package-lock.json');
    const install = index('RUN', 'npm ci');
    assert.ok(copyLock >= 0 && install > copyLock, 'package.json and package-lock.json copied, then npm ci');
    assert.match(steps[install]?.args ?? '', /npm ci --omit=dev/, 'production dependencies only');
    assert.ok(!steps.some((s) => s.op === 'RUN' && /npm (install|i)\b/.test(s.args)), 'no npm install (it may rewrite the lock)');
    const user = steps.findLastIndex((s) => s.op === 'USER');
    assert.ok(user > steps.findLastIndex((s) => s.op === 'RUN'), 'USER after the last RUN');
    assert.ok(!['root', '0'].includes(steps[user]?.args ?? 'root'), 'not root');
    assert.ok(user < index('CMD'), 'USER before CMD');
  });

  test('runs `trailwatch run` with the same environment as compose, and checks /healthz on observe.port', () => {
    assert.equal(steps.find((s) => s.op === 'CMD')?.args, '["node", "src/cli/main.ts", "run"]');
    const env = steps.filter((s) => s.op === 'ENV').map((s) => s.args);
    assert.ok(env.includes('NODE_OPTIONS=--disable-warning=TimeoutNegativeWarning'), 'NODE_OPTIONS as in compose');
    assert.ok(env.includes('TRAILWATCH_OBSERVE__HOST=0.0.0.0'), 'observe.host on every interface');
    const health = steps.find((s) => s.op === 'HEALTHCHECK')?.args ?? '';
    const defaultPort = configSchema.parse({}).observe.port;
    assert.ok(health.includes('/healthz'), 'HEALTHCHECK asks /healthz');
    assert.ok(
      health.includes(`process.env.TRAILWATCH_OBSERVE__PORT || ${defaultPort}`),
      `HEALTHCHECK follows TRAILWATCH_OBSERVE__PORT, default observe.port ${defaultPort}`,
    );
    assert.ok(steps.some((s) => s.op === 'EXPOSE' && s.args === String(defaultPort)));
  });

  test('what it copies exists and is in the build context (.dockerignore is an allowlist)', () => {
    const ignore = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    assert.equal(ignore[0], '*', '.dockerignore starts by leaving everything out');
    const allowed = new Set(ignore.filter((l) => l.startsWith('!')).map((l) => l.slice(1).replace(/\/$/, '')));
    const sources = steps.filter((s) => s.op === 'COPY').flatMap((s) => s.args.split(/\s+/).slice(0, -1));
    assert.ok(sources.length >= 5);
    for (const src of sources) {
      const path = src.replace(/\/$/, '');
      assert.ok(existsSync(join(REPO_ROOT, path)), `COPY ${src}: exists`);
      assert.ok(allowed.has(path), `COPY ${src}: allowed by .dockerignore (!${path})`);
    }
  });
});
