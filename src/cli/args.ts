import { type ParseArgsConfig, parseArgs } from 'node:util';
import { ErrorCodes, TrailwatchError } from '../errors.ts';

/** Options every command takes. */
export const COMMON_OPTIONS = {
  config: { type: 'string', short: 'c' },
  help: { type: 'boolean', short: 'h' },
  'log-level': { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export const COMMON_HELP = `Common options:
  -c, --config FILE   config file, YAML or JSON (see README "Configuration"); env TRAILWATCH_* and
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

const DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * `--since`: an ISO 8601 time (`2026-05-01`, `2026-05-01T12:00:00Z`) or a duration back from
 * now (`90s`, `15m`, `1h30m`, `2d`, `1w`). Returns ms since the epoch.
 */
export function sinceOption(value: string | undefined, nowMs: number, usage: string, name = 'since'): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^(\d+(\.\d+)?(ms|s|m|h|d|w))+$/.test(v)) {
    let ms = 0;
    for (const [, n, unit] of v.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d|w)/g)) ms += Number(n) * (DURATION_UNITS_MS[unit as string] ?? 0);
    return nowMs - ms;
  }
  const at = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(v) ? Date.parse(v) : Number.NaN;
  if (Number.isNaN(at)) {
    throw usageError(`--${name} takes an ISO time (2026-05-01T12:00:00Z) or a duration back from now (15m, 1h, 2d), got "${value}"`, usage);
  }
  return at;
}

/**
 * Error codes given as `--code` (repeatable, or comma-separated), case-insensitive and with or
 * without the `TW_` prefix; anything that is not one of trailwatch's codes is refused.
 */
export function errorCodesOption(values: string[] | undefined, usage: string): Set<string> | undefined {
  const given = listOption(values);
  if (!given) return undefined;
  const known = new Set<string>(Object.values(ErrorCodes));
  const codes = new Set<string>();
  for (const g of given) {
    const code = g.toUpperCase().startsWith('TW_') ? g.toUpperCase() : `TW_${g.toUpperCase()}`;
    if (!known.has(code)) throw usageError(`unknown error code "${g}" (one of ${[...known].join(', ')})`, usage);
    codes.add(code);
  }
  return codes;
}

/** A repeatable and comma-separated string option as a set, or undefined when not given. */
export function listOption(values: string[] | undefined): Set<string> | undefined {
  const items = (values ?? [])
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '');
  return items.length > 0 ? new Set(items) : undefined;
}
