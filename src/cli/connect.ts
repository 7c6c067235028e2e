import { type LoadConfigOptions, loadConfig } from '../config/load.ts';
import type { Config, ConfigInput } from '../config/schema.ts';
import { ErrorCodes, TrailwatchError } from '../errors.ts';
import { createLogger, type Logger } from '../logger.ts';
import { stackStatus, stackUp } from '../stack/local.ts';

export interface Session {
  config: Config;
  logger: Logger;
  /** True when the brokers and registry are the local stack's. */
  localStack: boolean;
}

/**
 * Loads the config and, when it names no brokers or registry, points it at the local stack —
 * started if it is not running (`autoStart`), so every command works with no configuration.
 */
export async function openSession(
  values: { config?: string | undefined; 'log-level'?: string | undefined },
  options: { autoStart?: boolean; overrides?: ConfigInput } = {},
): Promise<Session> {
  const load: LoadConfigOptions = { file: values.config };
  const overrides: ConfigInput = structuredClone(options.overrides ?? {});
  if (values['log-level']) overrides.log = { level: values['log-level'] as Config['log']['level'] };
  load.overrides = overrides;
  const config = loadConfig(load);
  const logger = createLogger({ level: config.log.level });
  let localStack = false;
  if (config.kafka.brokers.length === 0 || !config.registry.url) {
    const status = await stackStatus();
    const stack = status.running
      ? { brokers: status.brokers, registryUrl: status.registryUrl }
      : options.autoStart
        ? await stackUp()
        : null;
    if (!stack) {
      throw new TrailwatchError(
        ErrorCodes.USAGE,
        'no Kafka configured and the local stack is not running: set KAFKA_BROKERS and SCHEMA_REGISTRY_URL, or run `trailwatch stack up`',
        { fault: 'user' },
      );
    }
    if (config.kafka.brokers.length === 0) config.kafka.brokers = stack.brokers;
    if (!config.registry.url) config.registry.url = stack.registryUrl;
    localStack = true;
    logger.debug({ brokers: config.kafka.brokers, registry: config.registry.url }, 'using the local stack');
  }
  return { config, logger, localStack };
}
