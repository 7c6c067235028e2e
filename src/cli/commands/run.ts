import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { type ConfigFile, parseConfigText } from '../../config/file.ts';
import { contentHash, LiveConfig } from '../../config/live.ts';
import { loadConfigFrom } from '../../config/load.ts';
import type { Config } from '../../config/schema.ts';
import type { Insight } from '../../contracts/types.ts';
import { insightJson } from '../../emit/insight.ts';
import { ConfigError, errorMessage } from '../../errors.ts';
import type { Logger } from '../../logger.ts';
import { Observer } from '../../observe/observer.ts';
import { DetectorRuntime } from '../../runtime/detector.ts';
import { createRegistry } from '../../runtime/registry.ts';
import { createTransport } from '../../transport/index.ts';
import { COMMON_HELP, parse, usageError } from '../args.ts';
import { openSession } from '../connect.ts';

export const RUN_USAGE = `Usage: trailwatch run [options]

Runs the detector: a consumer group on the events topic keeps per-action and per principal ×
action baselines in event time and produces Insight Start/End records to the alerts topic
(Avro, Confluent wire format). Records it cannot decode go to the dead-letter topic with the
reason in their headers. With no KAFKA_BROKERS configured it uses (and starts) the local stack.
Stops cleanly on SIGINT/SIGTERM.

While it runs: Prometheus metrics on http://127.0.0.1:9464/metrics, /healthz (the process is
alive) and /readyz (200 once partitions are assigned, restored and caught up; 503 with the
reasons otherwise); observe.port / TRAILWATCH_OBSERVE__PORT moves them, 0 turns them off,
observe.host 0.0.0.0 opens them to other hosts. Every observe.refreshMs the member publishes its
status (partitions, lag, keys, open Insights) for \`trailwatch status\`.

With --watch (needs --config) the config file is read again whenever it changes: a valid new
version's detector tuning (scoreThreshold, floors, direction, minHistoryMs, overrides,
suppressions) is applied at the next batch boundary, without a restart, and logged with its
version (a counter and the content's hash); an invalid one is refused with its problems logged,
and the running config kept. Other changes are logged as needing a restart.

Without --watch the member follows the config topic (topics.config): the latest version written
by \`trailwatch config apply\` (or by the feedback policy) is applied at start and every version
after it within detector.configPollMs (default 5 s; 0: off), logged once, and recorded in every
Insight and finding it produces (trailwatch.configVersion). A broker that cannot be read at start
does not stop the member: it runs on its file and environment config and keeps trying.

Options:
      --print            also print each Insight as JSON on stdout
      --watch            re-read the --config file when it changes (see above)
${COMMON_HELP}`;

export async function runCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { print: { type: 'boolean' }, watch: { type: 'boolean' } }, RUN_USAGE);
  if (values.help) {
    process.stdout.write(`${RUN_USAGE}\n`);
    return 0;
  }
  if (values.watch && !values.config) throw usageError('--watch needs --config FILE', RUN_USAGE);
  // Listen from the start: a SIGTERM while connecting still ends in a clean stop and exit 0.
  const signalled = waitForSignal();
  const session = await openSession(values, { autoStart: true });
  const onInsight = values.print ? (i: Insight) => process.stdout.write(`${JSON.stringify(insightJson(i))}\n`) : undefined;
  const transport = createTransport(session.config.kafka, session.logger);
  const observer = new Observer({ config: session.config, transport, logger: session.logger });
  const watched = values.watch && values.config ? watchConfig(values.config, session.config, session.logger) : null;
  const runtime = new DetectorRuntime({
    config: session.config,
    transport,
    registry: createRegistry(session.config.registry),
    logger: session.logger,
    hooks: observer.hooks,
    ...(watched ? { live: watched.live } : {}),
    ...(onInsight ? { onInsight } : {}),
  });
  observer.attach(runtime);
  // Listening first: /healthz answers and /readyz says "starting" while topics and state come up.
  await observer.start();
  try {
    await runtime.start();
    await observer.refresh();
    const signal = await signalled;
    session.logger.info({ signal }, 'stopping: finishing the batch in hand, committing, leaving the group');
    await runtime.stop();
  } finally {
    watched?.stop();
    await observer.stop();
  }
  return 0;
}

/**
 * `--watch`: the file polled (editors replace files, which a file watch loses), each new content
 * validated like at start and applied to a LiveConfig, or refused with every problem logged.
 */
function watchConfig(file: string, initial: Config, logger: Logger): { live: LiveConfig; stop: () => void } {
  const read = () => {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      return '';
    }
  };
  let lastText = read();
  const live = new LiveConfig(initial, contentHash(lastText));
  const log = logger.child({ component: 'config', file });
  log.info({ configVersion: live.version.id }, 'config version');
  const check = () => {
    const text = read();
    if (text === lastText) return;
    lastText = text;
    let next: Config;
    try {
      next = loadConfigFrom(readConfigInputText(file, text));
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [errorMessage(err)];
      log.error({ problems, configVersion: live.version.id }, 'config refused: the running config is kept');
      return;
    }
    // What the session filled in (the local stack's addresses) is not a change.
    if (next.kafka.brokers.length === 0) next.kafka.brokers = initial.kafka.brokers;
    if (!next.registry.url) next.registry.url = initial.registry.url;
    const result = live.apply(next, contentHash(text));
    if (result.needsRestart.length > 0) log.warn({ paths: result.needsRestart }, 'config: these changes take effect only after a restart');
    if (result.applied) {
      const s = next.detector;
      log.info(
        { configVersion: live.version.id, overrides: s.overrides.length, suppressions: s.suppressions.length },
        'config version accepted: applied at the next batch boundary',
      );
    }
  };
  watchFile(file, { interval: WATCH_INTERVAL_MS, persistent: false }, check);
  return { live, stop: () => unwatchFile(file, check) };
}

/** How often --watch looks at the file. */
const WATCH_INTERVAL_MS = 500;

function readConfigInputText(file: string, text: string): ConfigFile {
  const parsed = parseConfigText(file, text);
  if (parsed.data === null) throw new ConfigError(parsed.errors);
  return parsed;
}

export function waitForSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      process.off('SIGINT', on);
      process.off('SIGTERM', on);
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
}
