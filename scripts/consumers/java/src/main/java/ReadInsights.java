import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.PrintStream;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.DecoderFactory;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * Reads trailwatch's Insights and findings with kafka-clients and Apache Avro: the Confluent wire
 * format (magic byte 0, 4-byte big-endian schema id, Avro body) read by hand, the writer's schema
 * fetched once per id from the registry's Confluent API ({@code GET /schemas/ids/{id}}).
 *
 * <p>Prints one JSON object per record, as scripts/consumers/read_insights.py does: topic,
 * partition, offset, key, headers, value. Arguments: {@code --bootstrap} (env KAFKA_BROKERS),
 * {@code --registry} (env SCHEMA_REGISTRY_URL), {@code --topic} (repeatable), {@code --group},
 * {@code --until-end}, {@code --timeout SECONDS}, {@code -X key=value} (consumer property).
 */
public final class ReadInsights {
  /** Per registry request: java.net.http waits forever unless told. */
  private static final Duration REGISTRY_TIMEOUT = Duration.ofSeconds(10);

  private static final ObjectMapper JSON = new ObjectMapper();

  private final HttpClient http = HttpClient.newBuilder().connectTimeout(REGISTRY_TIMEOUT).build();
  private final String registryUrl;
  private final String registryAuth;
  private final Map<Integer, GenericDatumReader<GenericRecord>> readers = new HashMap<>();

  ReadInsights(String registryUrl, String user, String password) {
    this.registryUrl = registryUrl.replaceAll("/+$", "");
    this.registryAuth =
        user == null || user.isEmpty()
            ? null
            : "Basic " + Base64.getEncoder().encodeToString((user + ":" + (password == null ? "" : password)).getBytes(StandardCharsets.UTF_8));
  }

  /** The writer's schema of one id, asked once. */
  private GenericDatumReader<GenericRecord> reader(int schemaId) throws IOException, InterruptedException {
    GenericDatumReader<GenericRecord> known = readers.get(schemaId);
    if (known != null) return known;
    HttpRequest.Builder request =
        HttpRequest.newBuilder(URI.create(registryUrl + "/schemas/ids/" + schemaId))
            .timeout(REGISTRY_TIMEOUT)
            .header("Accept", "application/vnd.schemaregistry.v1+json, application/json");
    if (registryAuth != null) request.header("Authorization", registryAuth);
    HttpResponse<String> response = http.send(request.GET().build(), HttpResponse.BodyHandlers.ofString());
    if (response.statusCode() != 200) {
      throw new IOException("registry answered HTTP " + response.statusCode() + " for schema id " + schemaId + ": " + response.body());
    }
    JsonNode body = JSON.readTree(response.body());
    Schema schema = new Schema.Parser().parse(body.get("schema").asText());
    GenericDatumReader<GenericRecord> reader = new GenericDatumReader<>(schema);
    readers.put(schemaId, reader);
    return reader;
  }

  GenericRecord decode(byte[] value) throws IOException, InterruptedException {
    if (value == null || value.length < 5 || value[0] != 0) {
      throw new IOException("not in the Confluent wire format (magic byte 0 and a 4-byte schema id)");
    }
    int schemaId = ByteBuffer.wrap(value, 1, 4).getInt();
    return reader(schemaId).read(null, DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, null));
  }

  /** Avro's generic values as plain JSON-ready ones: records and maps to objects, strings and enum symbols to strings. */
  static Object plain(Object v) {
    if (v instanceof GenericRecord r) {
      Map<String, Object> out = new LinkedHashMap<>();
      for (Schema.Field f : r.getSchema().getFields()) out.put(f.name(), plain(r.get(f.pos())));
      return out;
    }
    if (v instanceof Map<?, ?> m) {
      Map<String, Object> out = new LinkedHashMap<>();
      m.forEach((k, x) -> out.put(k.toString(), plain(x)));
      return out;
    }
    if (v instanceof Collection<?> c) {
      List<Object> out = new ArrayList<>();
      c.forEach(x -> out.add(plain(x)));
      return out;
    }
    if (v instanceof ByteBuffer b) return StandardCharsets.UTF_8.decode(b.duplicate()).toString();
    if (v instanceof CharSequence || v instanceof org.apache.avro.generic.GenericEnumSymbol<?>) return v.toString();
    return v; // null, Boolean, Integer, Long (timestamp-millis stays ms), Float, Double
  }

  public static void main(String[] args) throws Exception {
    String bootstrap = envOr("KAFKA_BROKERS", "127.0.0.1:19092");
    String registry = envOr("SCHEMA_REGISTRY_URL", "http://127.0.0.1:18080/apis/ccompat/v7");
    List<String> topics = new ArrayList<>();
    String group = null;
    boolean untilEnd = false;
    long timeoutMs = Long.MAX_VALUE;
    Properties extra = new Properties();
    for (int i = 0; i < args.length; i++) {
      switch (args[i]) {
        case "--bootstrap" -> bootstrap = args[++i];
        case "--registry" -> registry = args[++i];
        case "--topic" -> topics.add(args[++i]);
        case "--group" -> group = args[++i];
        case "--until-end" -> untilEnd = true;
        case "--timeout" -> timeoutMs = (long) (Double.parseDouble(args[++i]) * 1000);
        case "-X" -> {
          String[] kv = args[++i].split("=", 2);
          extra.setProperty(kv[0], kv.length > 1 ? kv[1] : "");
        }
        default -> {
          System.err.println("ReadInsights: unknown argument " + args[i]);
          System.exit(2);
        }
      }
    }
    if (topics.isEmpty()) topics = List.of(envOr("TRAILWATCH_TOPICS__ALERTS", "trailwatch.insights"), envOr("TRAILWATCH_TOPICS__FINDINGS", "trailwatch.findings"));

    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ConsumerConfig.GROUP_ID_CONFIG, group != null ? group : "trailwatch-reader-" + UUID.randomUUID());
    // Java's default is read_uncommitted: it would show Insights of transactions that aborted.
    props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, String.valueOf(group != null));
    props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    props.putAll(extra);

    ReadInsights decoder = new ReadInsights(registry, System.getenv("SCHEMA_REGISTRY_USERNAME"), System.getenv("SCHEMA_REGISTRY_PASSWORD"));
    PrintStream out = new PrintStream(System.out, false, StandardCharsets.UTF_8);
    int failed = 0;
    int read = 0;
    long deadline = timeoutMs == Long.MAX_VALUE ? Long.MAX_VALUE : System.currentTimeMillis() + timeoutMs;
    try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(props)) {
      consumer.subscribe(topics);
      while (System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, byte[]> record : consumer.poll(Duration.ofMillis(500))) {
          try {
            Map<String, Object> line = new LinkedHashMap<>();
            line.put("topic", record.topic());
            line.put("partition", record.partition());
            line.put("offset", record.offset());
            line.put("key", record.key());
            Map<String, String> headers = new LinkedHashMap<>();
            for (Header h : record.headers()) headers.put(h.key(), h.value() == null ? null : new String(h.value(), StandardCharsets.UTF_8));
            line.put("headers", headers);
            line.put("value", plain(decoder.decode(record.value())));
            out.println(JSON.writeValueAsString(line));
            read++;
          } catch (IOException e) {
            failed++;
            System.err.printf("ReadInsights: %s[%d]@%d: %s%n", record.topic(), record.partition(), record.offset(), e.getMessage());
          }
        }
        // With read_committed, endOffsets are the last stable offsets: the end a reader can reach.
        if (untilEnd && !consumer.assignment().isEmpty()) {
          Map<TopicPartition, Long> ends = consumer.endOffsets(consumer.assignment());
          if (ends.entrySet().stream().allMatch(e -> consumer.position(e.getKey()) >= e.getValue())) break;
        }
      }
    }
    out.flush();
    System.err.printf("ReadInsights: %d records%s%n", read, failed > 0 ? ", " + failed + " not decoded" : "");
    System.exit(failed > 0 ? 1 : 0);
  }

  private static String envOr(String name, String fallback) {
    String v = System.getenv(name);
    return v == null || v.isBlank() ? fallback : v;
  }
}
