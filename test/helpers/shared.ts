/**
 * Where tests find data outside the repository: the shared CloudTrail deliveries live next to
 * the checkout (`../shared/data/cloudtrail/`), and not every machine has them, so tests that
 * need them skip with the path they looked at.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');

export const FIXTURES_DIR = join(REPO_ROOT, 'test/fixtures');

/** The shared CloudTrail data root; TRAILWATCH_SHARED_CLOUDTRAIL overrides it. */
export const SHARED_CLOUDTRAIL_DIR = resolve(process.env.TRAILWATCH_SHARED_CLOUDTRAIL ?? join(REPO_ROOT, '../shared/data/cloudtrail'));

/** The one real dataset the tests pin numbers to (README there: 55 deliveries, 2,900 records). */
export const INVICTUS_DIR = join(SHARED_CLOUDTRAIL_DIR, 'invictus-aws-2023-07-10');

/** null when the data is present, else the reason to pass to `t.skip()`. */
export function sharedCloudTrailMissing(dir: string = INVICTUS_DIR): string | null {
  return existsSync(dir) ? null : `shared CloudTrail data not present at ${dir}`;
}

/** Every `.json` delivery under `dir`, sorted, with its records parsed independently of src/. */
export function loadDeliveriesDirectly(dir: string): { file: string; records: unknown[] }[] {
  const out: { file: string; records: unknown[] }[] = [];
  const walk = (d: string): void => {
    for (const entry of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
      const full = join(d, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.json')) {
        const doc = JSON.parse(readFileSync(full, 'utf8')) as { Records: unknown[] };
        out.push({ file: full, records: doc.Records });
      }
    }
  };
  walk(dir);
  return out;
}
