import { type Logger, pino } from 'pino';

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

export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'trailwatch',
      level: options.level ?? process.env.TRAILWATCH_LOG_LEVEL ?? 'info',
      redact: { paths: REDACT, censor: '****' },
    },
    pino.destination({ dest: 2, sync: true }),
  );
}
