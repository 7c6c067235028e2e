#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { ConfigError, isTrailwatchError } from '../errors.ts';
import { orList, suggest } from './args.ts';

const USAGE = `trailwatch: real-time, tunable CloudTrail-Insights-style anomaly detection on Apache Kafka

Usage: trailwatch <command> [options]      (trailwatch <command> --help for each)

Commands:
  start       the main job: with KAFKA_BROKERS set, run the detector; with no configuration,
              run the demo on the local stack
  run         run the detector (consumer group on the events topic → Insights on the alerts topic)
  publish     publish audit records: publish cloudtrail <files or directories>
  ingest      raw audit messages on Kafka (EventBridge, CloudWatch Logs, k8s audit) → events, exactly once
  tail        follow the Insights (and findings): readable lines on a terminal, JSON lines in a pipe
  dlq         show | replay the dead letters: records the detector could not use, with why
  backtest    run the detector offline over CloudTrail files, AuditEvent JSON lines or counts
  demo        local stack + detector + synthetic traffic with an injected spike
  stack       up | down | status of the local Kafka + schema registry
  status      each running detector member: partitions, lag, keys, open Insights, config
  config      validate and print the effective configuration (secrets masked)
  feedback    mark an Insight or finding a false (or true) positive; repeated ones become a suppression
  rules       check | test detection rules (EventBridge patterns, Sigma) on CloudTrail records

  trailwatch --version (-V, version) prints the version.`;

const START_USAGE = `Usage: trailwatch start [options]

The main job. With Kafka configured (KAFKA_BROKERS set) it runs the detector, exactly as
\`trailwatch run\` with the same options (below); with no configuration it runs the demo on the
local stack, as \`trailwatch demo\` (see trailwatch demo --help).`;

type Command = (argv: string[]) => Promise<number>;

/**
 * Each command's module is loaded when it is run, not at start: the Kafka clients, the registry
 * client and the rule parsers cost a few seconds of start-up that `backtest` of a file never needs.
 */
const COMMANDS: Record<string, () => Promise<Command>> = {
  run: async () => (await import('./commands/run.ts')).runCommand,
  publish: async () => (await import('./commands/publish.ts')).publishCommand,
  ingest: async () => (await import('./commands/ingest.ts')).ingestCommand,
  tail: async () => (await import('./commands/tail.ts')).tailCommand,
  dlq: async () => (await import('./commands/dlq.ts')).dlqCommand,
  backtest: async () => (await import('./commands/backtest.ts')).backtestCommand,
  demo: async () => (await import('./commands/demo.ts')).demoCommand,
  stack: async () => (await import('./commands/stack.ts')).stackCommand,
  status: async () => (await import('./commands/status.ts')).statusCommand,
  config: async () => (await import('./commands/config.ts')).configCommand,
  feedback: async () => (await import('./commands/feedback.ts')).feedbackCommand,
  rules: async () => (await import('./commands/rules.ts')).rulesCommand,
  start: async () => async (argv) => {
    if (argv.includes('--help') || argv.includes('-h')) {
      // run's options under start's own name: `start --help` must not answer "Usage: trailwatch run".
      const { RUN_USAGE } = await import('./commands/run.ts');
      process.stdout.write(`${START_USAGE}\n\n${RUN_USAGE.replace(/^Usage: trailwatch run .*\n\n/, '')}\n`);
      return 0;
    }
    return process.env.KAFKA_BROKERS
      ? import('./commands/run.ts').then((m) => m.runCommand(argv))
      : import('./commands/demo.ts').then((m) => m.demoCommand(argv));
  },
};

/** package.json's version: the one the package was published (or checked out) as. */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name ? 0 : 1;
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    process.stdout.write(`trailwatch ${version()}\n`);
    return 0;
  }
  const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!load) {
    // Suggested from COMMANDS itself, so every command added there is suggested too.
    const near = suggest(name, [...Object.keys(COMMANDS), 'help', 'version']);
    process.stderr.write(
      near.length > 0
        ? `trailwatch: unknown command "${name}": did you mean ${orList(near.map((c) => `"${c}"`))}?\n(trailwatch --help lists every command)\n`
        : `trailwatch: unknown command "${name}"\n\n${USAGE}\n`,
    );
    return 1;
  }
  return (await load())(rest);
}

/** Once a command is done, a client library's lingering reconnect timer must not keep the process up. */
function exitSoon(): void {
  setTimeout(() => process.exit(), 2_000).unref();
}

// Output piped into a reader that stops early (`| head`): stop quietly, as other command-line tools do.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    exitSoon();
  },
  (err: unknown) => {
    if (err instanceof ConfigError || (isTrailwatchError(err) && err.fault === 'user')) {
      process.stderr.write(`trailwatch: ${(err as Error).message}\n`);
    } else if (isTrailwatchError(err)) {
      process.stderr.write(`trailwatch: ${err.message} [${err.code}]\n`);
    } else {
      process.stderr.write(`trailwatch: ${(err as Error)?.stack ?? String(err)}\n`);
    }
    process.exitCode = 1;
    exitSoon();
  },
);
