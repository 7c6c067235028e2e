import type { DetectorConfig, DetectorOverride } from '../config/schema.ts';
import type { InsightSubject } from '../emit/insight.ts';
import type { Direction } from './baseline/score.ts';

/**
 * Per-key settings from `detector.overrides`: each override matches keys by globs on their
 * identity; the most specific match (the most fields that are not a bare `*`) wins, the first
 * listed among equals. Resolved once per key, when the key is created or restored.
 */

const FIELDS = ['scope', 'insightType', 'accountId', 'region', 'service', 'action', 'principal'] as const;
type Field = (typeof FIELDS)[number];

interface Compiled {
  tests: Array<[Field, RegExp]>;
  specificity: number;
  override: DetectorOverride;
}

/** A glob as a whole-string regular expression: `*` any run of characters, `?` one, everything else literal. */
export function globToRegExp(glob: string): RegExp {
  let out = '';
  for (const ch of glob) {
    if (ch === '*') out += '.*';
    else if (ch === '?') out += '.';
    else out += ch.replace(/[\\^$.|+()[\]{}]/g, '\\$&');
  }
  return new RegExp(`^${out}$`, 's');
}

export class Overrides {
  private readonly compiled: Compiled[];
  private readonly direction: Direction;

  constructor(config: Pick<DetectorConfig, 'direction' | 'overrides'>) {
    this.direction = config.direction;
    this.compiled = config.overrides.map((override) => {
      const tests: Array<[Field, RegExp]> = [];
      for (const field of FIELDS) {
        const glob = override.match[field];
        if (glob !== undefined && glob !== '*') tests.push([field, globToRegExp(glob)]);
      }
      return { tests, specificity: tests.length, override };
    });
  }

  get empty(): boolean {
    return this.compiled.length === 0;
  }

  /** The most specific override matching the key, or null. */
  match(subject: InsightSubject): DetectorOverride | null {
    let best: Compiled | null = null;
    for (const c of this.compiled) {
      if (best !== null && c.specificity <= best.specificity) continue;
      if (c.tests.every(([field, re]) => re.test(subject[field] ?? ''))) best = c;
    }
    return best?.override ?? null;
  }

  directionOf(subject: InsightSubject): Direction {
    if (this.compiled.length === 0) return this.direction;
    return this.match(subject)?.direction ?? this.direction;
  }
}
