import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { editDistance, errorCodesOption, listOption, orList, sinceOption, suggest } from '../../src/cli/args.ts';

const NOW = Date.parse('2026-05-01T12:00:00Z');

describe('sinceOption', () => {
  test('durations back from now', () => {
    assert.equal(sinceOption('90s', NOW, ''), NOW - 90_000);
    assert.equal(sinceOption('15m', NOW, ''), NOW - 900_000);
    assert.equal(sinceOption('1h30m', NOW, ''), NOW - 5_400_000);
    assert.equal(sinceOption('2d', NOW, ''), NOW - 2 * 86_400_000);
    assert.equal(sinceOption('1w', NOW, ''), NOW - 7 * 86_400_000);
    assert.equal(sinceOption('500ms', NOW, ''), NOW - 500);
  });

  test('ISO times; a date alone is UTC midnight', () => {
    assert.equal(sinceOption('2026-04-30T08:15:00Z', NOW, ''), Date.parse('2026-04-30T08:15:00Z'));
    assert.equal(sinceOption('2026-04-30T08:15:00+02:00', NOW, ''), Date.parse('2026-04-30T06:15:00Z'));
    assert.equal(sinceOption('2026-04-30', NOW, ''), Date.parse('2026-04-30T00:00:00Z'));
  });

  test('absent is undefined; anything else is a usage error naming both forms', () => {
    assert.equal(sinceOption(undefined, NOW, ''), undefined);
    for (const bad of ['yesterday', '1x', '2026', '15', 'h1'])
      assert.throws(
        () => sinceOption(bad, NOW, 'USAGE'),
        (err: Error & { code?: string }) => {
          assert.equal(err.code, 'TW_USAGE');
          assert.match(err.message, /--since takes an ISO time .* or a duration back from now/);
          return true;
        },
      );
  });
});

describe('errorCodesOption', () => {
  test('case-insensitive, with or without TW_, repeatable and comma-separated', () => {
    assert.deepEqual(
      errorCodesOption(['deserialize', 'TW_SCHEMA_UNKNOWN,tw_normalize'], ''),
      new Set(['TW_DESERIALIZE', 'TW_SCHEMA_UNKNOWN', 'TW_NORMALIZE']),
    );
    assert.equal(errorCodesOption(undefined, ''), undefined);
    assert.equal(errorCodesOption([], ''), undefined);
  });

  test('an unknown code is refused with the list of known ones', () => {
    assert.throws(
      () => errorCodesOption(['TW_DESERIALISE'], ''),
      /unknown error code "TW_DESERIALISE" \(one of TW_CONFIG_INVALID, TW_DESERIALIZE/,
    );
  });
});

describe('listOption', () => {
  test('splits, trims, drops blanks', () => {
    assert.deepEqual(listOption(['a, b', 'c', ' ,']), new Set(['a', 'b', 'c']));
    assert.equal(listOption([' ']), undefined);
  });
});

describe('suggest', () => {
  const COMMANDS = ['run', 'publish', 'tail', 'dlq', 'backtest', 'demo', 'stack', 'status', 'config', 'rules', 'start', 'version'];

  test('edit distance counts a swap of neighbours as one edit', () => {
    assert.equal(editDistance('bactest', 'backtest'), 1);
    assert.equal(editDistance('strat', 'start'), 1);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(editDistance('kitten', 'sitting'), 3);
  });

  test('the nearest within one edit (two from five characters), else the names it starts', () => {
    assert.deepEqual(suggest('bactest', COMMANDS), ['backtest']);
    assert.deepEqual(suggest('BACKTSET', COMMANDS), ['backtest']);
    assert.deepEqual(suggest('tial', COMMANDS), ['tail']);
    assert.deepEqual(suggest('sta', COMMANDS), ['stack', 'status', 'start']);
    assert.deepEqual(suggest('stat', COMMANDS), ['start'], 'one edit is nearer than a shared start');
    assert.deepEqual(suggest('conf', COMMANDS), ['config']);
    assert.deepEqual(suggest('form', ['format', 'findings', 'since']), ['format']);
    assert.deepEqual(suggest('frobnicate', COMMANDS), []);
    assert.deepEqual(suggest('x', COMMANDS), []);
    assert.deepEqual(suggest('s', ['s1', 's2']), [], 'one character is too little to go on');
  });

  test('orList', () => {
    assert.equal(orList([]), '');
    assert.equal(orList(['a']), 'a');
    assert.equal(orList(['a', 'b']), 'a or b');
    assert.equal(orList(['a', 'b', 'c']), 'a, b or c');
  });
});
