import { loadConfig, redactConfig } from '../../config/load.ts';
import { COMMON_HELP, parse } from '../args.ts';

export const CONFIG_USAGE = `Usage: trailwatch config [options]

Validates the configuration (defaults ← --config file ← environment) and prints the effective
result as JSON, secrets shown as ****. Every problem is listed at once; exit 1 if any.

${COMMON_HELP}`;

export async function configCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {}, CONFIG_USAGE);
  if (values.help) {
    process.stdout.write(`${CONFIG_USAGE}\n`);
    return 0;
  }
  const config = loadConfig({ file: values.config });
  process.stdout.write(`${JSON.stringify(redactConfig(config), null, 2)}\n`);
  return 0;
}
