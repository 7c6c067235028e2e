import { existsSync } from 'node:fs';
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

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * parseArgs with the common options, for every command: an unknown long option is answered with
 * the nearest known one (`--form` → `did you mean --format?`), `--log-level` is checked against
 * the levels, and `--config` must name a file that is there.
 */
export function parse<O extends NonNullable<ParseArgsConfig['options']>>(argv: string[], options: O, usage: string) {
  const all = { ...COMMON_OPTIONS, ...options };
  let parsed: ReturnType<typeof parseArgs<{ args: string[]; options: typeof all; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args: argv, options: all, allowPositionals: true, strict: true });
  } catch (err) {
    throw optionError(err as NodeJS.ErrnoException, Object.keys(all), usage);
  }
  const values = parsed.values as { help?: boolean; config?: string; 'log-level'?: string };
  if (!values.help) {
    const level = values['log-level'];
    if (level !== undefined && !LOG_LEVELS.includes(level)) {
      throw usageError(`--log-level takes one of ${LOG_LEVELS.join(', ')}, got "${level}"`, usage);
    }
    if (values.config !== undefined) assertPathsExist([values.config]);
  }
  return parsed;
}

function optionError(err: NodeJS.ErrnoException, known: string[], usage: string): TrailwatchError {
  const unknown = err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'(--?[^'=\s]+)/.exec(err.message)?.[1] : undefined;
  if (unknown === undefined) return usageError(err.message, usage);
  const near = unknown.startsWith('--') ? suggest(unknown.slice(2), known) : [];
  if (near.length === 0) return usageError(`unknown option ${unknown}`, usage);
  // The nearest option alone, not the whole usage after it: the suggestion is the answer.
  return new TrailwatchError(
    ErrorCodes.USAGE,
    `unknown option ${unknown}: did you mean ${orList(near.map((o) => `--${o}`))}?\n(${commandOf(usage)} --help lists every option)`,
    { fault: 'user' },
  );
}

/** `trailwatch dlq show` from `Usage: trailwatch dlq show [options]`. */
function commandOf(usage: string): string {
  return /^Usage: (trailwatch(?: [a-z][a-z-]*)*)/.exec(usage)?.[1] ?? 'trailwatch';
}

/**
 * Edit distance with adjacent transpositions counted as one edit (optimal string alignment), so
 * `bactest` and `strat` are each one edit from `backtest` and `start`.
 */
export function editDistance(a: string, b: string): number {
  const rows = a.length + 1;
  const cols = b.length + 1;
  const d: number[] = new Array(rows * cols).fill(0);
  const at = (i: number, j: number): number => d[i * cols + j] ?? 0;
  for (let i = 0; i < rows; i++) d[i * cols] = i;
  for (let j = 0; j < cols; j++) d[j] = j;
  for (let i = 1; i < rows; i++) {
    for (let j = 1; j < cols; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, at(i - 2, j - 2) + 1);
      d[i * cols + j] = best;
    }
  }
  return at(a.length, b.length);
}

/**
 * The known names closest to a mistyped one: those within one edit (two for names of five
 * characters or more), the nearest first; else the names it is the start of (at most three).
 * Empty when nothing is close enough to be a likely typo.
 */
export function suggest(given: string, known: readonly string[]): string[] {
  const input = given.toLowerCase();
  const allowed = input.length >= 5 ? 2 : 1;
  const scored = known
    .map((name) => ({ name, distance: editDistance(input, name.toLowerCase()) }))
    .filter((s) => s.distance <= allowed && s.distance < Math.max(input.length, 1));
  if (scored.length > 0) {
    const best = Math.min(...scored.map((s) => s.distance));
    return scored.filter((s) => s.distance === best).map((s) => s.name);
  }
  const prefixed = input.length >= 2 ? known.filter((name) => name.toLowerCase().startsWith(input)) : [];
  return prefixed.length <= 3 ? prefixed : [];
}

/**
 * The usage error of a command's unknown or missing action (`dlq shwo`), with the closest actions
 * suggested: `unknown dlq action "shwo": did you mean "show"?`.
 */
export function unknownAction(command: string, action: string | undefined, actions: readonly string[], usage: string): TrailwatchError {
  if (!action) return usageError(`missing ${command} action (one of ${orList(actions)})`, usage);
  const close = suggest(action, actions);
  const hint = close.length > 0 ? `: did you mean ${orList(close.map((a) => `"${a}"`))}?` : ` (one of ${orList(actions)})`;
  return usageError(`unknown ${command} action "${action}"${hint}`, usage);
}

/** `a`, `a or b`, `a, b or c`. */
export function orList(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;
}

/** Input paths must be there: one error naming each missing path, before anything is read or sent. */
export function assertPathsExist(paths: readonly string[]): void {
  const missing = paths.filter((p) => !existsSync(p));
  if (missing.length > 0) {
    throw new TrailwatchError(ErrorCodes.USAGE, missing.map((p) => `no such file or directory: ${p}`).join('\n'), { fault: 'user' });
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
