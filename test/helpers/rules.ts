import assert from 'node:assert/strict';
import { isTrailwatchError } from '../../src/errors.ts';

/** Asserts that parsing `text` is refused as a user's TW_RULE_INVALID whose message matches. */
export function assertRuleRefused(parse: (text: string, source: string) => unknown, text: string, message: RegExp): void {
  assert.throws(
    () => parse(text, 'bad.yml'),
    (err: unknown) => {
      assert.ok(isTrailwatchError(err));
      assert.equal(err.code, 'TW_RULE_INVALID');
      assert.equal(err.fault, 'user');
      assert.match(err.message, message);
      return true;
    },
  );
}
