#!/usr/bin/env node
import { ConfigError, isTrailwatchError } from '../errors.ts';
import { backtestCommand } from './commands/backtest.ts';
import { configCommand } from './commands/config.ts';
import { demoCommand } from './commands/demo.ts';
import { dlqCommand } from './commands/dlq.ts';
import { publishCommand } from './commands/publish.ts';
import { rulesCommand } from './commands/rules.ts';
import { runCommand } from './commands/run.ts';
import { stackCommand } from './commands/stack.ts';
import { tailCommand } from './commands/tail.ts';

const USAGE = `trailwatch: real-time, tunable CloudTrail-Insights-style anomaly detection on Apache Kafka

Usage: trailwatch <command> [options]      (trailwatch <command> --help for each)

Commands:
  start       the main job: with KAFKA_BROKERS set, run the detector; with no configuration,
              run the demo on the local stack
  run         run the detector (consumer group on the events topic → Insights on the alerts topic)
  publish     publish audit records: publish cloudtrail <files or directories>
  tail        print Insights from the alerts topic as CloudTrail-Insights-shaped JSON
  dlq         show | replay the dead letters: records the detector could not use, with why
  backtest    run the detector offline over CloudTrail files, AuditEvent JSON lines or counts
  demo        local stack + detector + synthetic traffic with an injected spike
  stack       up | down | status of the local Kafka + schema registry
  config      validate and print the effective configuration (secrets masked)
  rules       check | test detection rules (EventBridge patterns, Sigma) on CloudTrail records`;

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, Command> = {
  run: runCommand,
  publish: publishCommand,
  tail: tailCommand,
  dlq: dlqCommand,
  backtest: backtestCommand,
  demo: demoCommand,
  stack: stackCommand,
  config: configCommand,
  rules: rulesCommand,
  start: (argv) => (process.env.KAFKA_BROKERS || argv.includes('--help') ? runCommand(argv) : demoCommand(argv)),
};

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return name ? 0 : 1;
  }
  const command = COMMANDS[name];
  if (!command) {
    process.stderr.write(`trailwatch: unknown command "${name}"\n\n${USAGE}\n`);
    return 1;
  }
  return command(rest);
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
