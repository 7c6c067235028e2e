import { type ParseArgsConfig, parseArgs } from 'node:util';
import { ErrorCodes, TrailwatchError } from '../errors.ts';

/** Options every command takes. */
export const COMMON_OPTIONS = {
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
  'log-level': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export const COMMON_HELP = `Common options:
  -c, --config FILE   JSON config file (see README "Configuration"); env TRAILWATCH_* and
                      KAFKA_BROKERS / SCHEMA_REGISTRY_URL override it
      --log-level L   fatal|error|warn|info|debug|trace|silent (default info)
  -h, --help          this help`;

export function parse<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O, usage: string) {
  try {
    return parseArgs({ args: argv, options: { ...COMMON_OPTIONS, ...options }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new TrailwatchError(ErrorCodes.USAGE, `${(err as Error).message}\n\n${usage}`, { fault: 'user' });
  }
}

export function usageError(message: string, usage: string): TrailwatchError {
  return new TrailwatchError(ErrorCodes.USAGE, `${message}\n\n${usage}`, { fault: 'user' });
}

export function intOption(value: string | undefined, name: string, usage: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw usageError(`--${name} takes a whole number, got "${value}"`, usage);
  return n;
}
