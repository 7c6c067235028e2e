import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Partitioners } from 'kafkajs';
import { murmur2, Partitioner, partitionForKey } from '../../src/transport/partitioner.ts';

describe('partitioner', () => {
  test('matches the murmur2 partitioner of the Java client', () => {
    // Reference values printed by the Java client (kafka-clients 4.1.2), as in test/detect/topology.test.ts:
    // Utils.toPositive(Utils.murmur2(key.getBytes(UTF_8))) % n
    const cases: Array<[string, number, number]> = [
      ['123456789012|arn:aws:iam::123456789012:user/alice', 0, 1],
      ['123456789012|arn:aws:sts::123456789012:assumed-role/deploy-pipeline', 0, 6],
      ['action|call|123456789012|us-east-1|ec2.amazonaws.com|RunInstances', 1, 2],
    ];
    for (const [key, of3, of7] of cases) {
      assert.equal(partitionForKey(key, 3), of3, key);
      assert.equal(partitionForKey(key, 7), of7, key);
    }
  });

  test('gives the partition kafkajs gives for many keys, lengths and partition counts', () => {
    const kafkajs = Partitioners.DefaultPartitioner();
    let seed = 7;
    const rand = () => {
      seed = (Math.imul(seed, 1_103_515_245) + 12_345) >>> 0;
      return seed / 2 ** 32;
    };
    for (let i = 0; i < 5_000; i++) {
      const length = Math.floor(rand() * 80);
      // Multi-byte characters too: the key is hashed as UTF-8 bytes.
      const key = Array.from({ length }, () =>
        String.fromCodePoint(rand() < 0.1 ? 0x4e00 + Math.floor(rand() * 500) : 32 + Math.floor(rand() * 95)),
      ).join('');
      const partitions = 1 + Math.floor(rand() * 64);
      const partitionMetadata = Array.from({ length: partitions }, (_, partitionId) => ({ partitionId, leader: 0 }));
      const expected = kafkajs({ topic: 't', partitionMetadata: partitionMetadata as never, message: { key, value: null } });
      assert.equal(partitionForKey(key, partitions), expected, `${JSON.stringify(key)} over ${partitions}`);
      assert.equal(partitionForKey(Buffer.from(key, 'utf8'), partitions), expected, 'bytes and strings alike');
    }
  });

  test('murmur2 of the empty key is the seed mixed', () => {
    // Java: Utils.murmur2(new byte[0]) == 275646681
    assert.equal(murmur2(new Uint8Array(0)), 275_646_681);
  });

  test('an explicit partition wins, keyless records go round-robin per topic', () => {
    const p = new Partitioner();
    assert.equal(p.partition('a', 4, { partition: 3, key: 'x' }), 3);
    assert.deepEqual(
      [0, 1, 2, 3, 4].map(() => p.partition('a', 4, { key: null })),
      [0, 1, 2, 3, 0],
    );
    assert.equal(p.partition('b', 4, {}), 0, 'another topic has its own turn');
    assert.equal(p.partition('a', 4, { key: 'k' }), partitionForKey('k', 4));
  });
});
