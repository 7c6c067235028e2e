import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger };

/** Keys whose values never reach a log line. */
const REDACT = [
  'password',
  'sasl.password',
  '*.password',
  '*.*.password',
  'secret',
  '*.secret',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
];

/** A pino logger on stderr (or `destination`, e.g. a test capturing lines) with every secret path redacted. */
export function createLogger(options: { level?: string; name?: string; destination?: DestinationStream } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'trailwatch',
      level: options.level ?? process.env.TRAILWATCH_LOG_LEVEL ?? 'info',
      redact: { paths: REDACT, censor: '****' },
    },
    options.destination ?? pino.destination({ dest: 2, sync: true }),
  );
}
