import kafkajs, { type Admin } from 'kafkajs';

const { ConfigResourceTypes } = kafkajs;

/** Kafka's default `max.message.bytes` (1 MiB + 12), assumed when a topic's config cannot be read. */
export const KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588;

/** What the broker accepts per record batch on each topic (`max.message.bytes`, which falls back to the broker's `message.max.bytes`). */
export async function readMaxMessageBytes(admin: Admin, topics: readonly string[]): Promise<Map<string, number>> {
  const limits = new Map<string, number>();
  const unique = [...new Set(topics)];
  const described = await admin.describeConfigs({
    includeSynonyms: false,
    resources: unique.map((name) => ({ type: ConfigResourceTypes.TOPIC, name, configNames: ['max.message.bytes'] })),
  });
  for (const resource of described.resources) {
    const entry = resource.configEntries.find((e) => e.configName === 'max.message.bytes');
    const value = Number(entry?.configValue);
    limits.set(resource.resourceName, Number.isFinite(value) && value > 0 ? value : KAFKA_DEFAULT_MAX_MESSAGE_BYTES);
  }
  for (const t of unique) if (!limits.has(t)) limits.set(t, KAFKA_DEFAULT_MAX_MESSAGE_BYTES);
  return limits;
}
