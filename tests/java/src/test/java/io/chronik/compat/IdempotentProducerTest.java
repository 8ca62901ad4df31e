package io.chronik.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The idempotent producer (enable.idempotence=true, acks=all, five requests in flight) with every
 * codec the Java client has: every acknowledged record is stored exactly once, at the offset its
 * acknowledgement named, in send order per partition, and reads back byte for byte with its key,
 * headers and timestamp.
 */
class IdempotentProducerTest extends WithAdmin {
    private static final int PARTITIONS = 3;
    private static final int RECORDS = 3000;


    @ParameterizedTest(name = "compression.type={0}")
    @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
    void idempotentAcksAllEveryCodec(String codec) throws Exception {
        String topic = Env.topicName("java-idem-" + codec);
        Env.createTopic(admin, topic, PARTITIONS, Env.replicationFactor(), Map.of());

        Properties p = Env.producerProps();
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION, 5);
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        // Small batches and a short linger: many batches, several in flight per partition.
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, 4096);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 2);

        // Values compress well (repeated text) yet differ per record.
        String filler = "chronik-" + codec + "-".repeat(40);
        long baseTs = System.currentTimeMillis() - 60_000;
        List<Future<RecordMetadata>> acks = new ArrayList<>();
        List<ProducerRecord<String, String>> sent = new ArrayList<>();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            for (int i = 0; i < RECORDS; i++) {
                ProducerRecord<String, String> r = new ProducerRecord<>(topic, i % PARTITIONS, baseTs + i,
                        "k" + i, filler + i);
                r.headers().add(new RecordHeader("seq", Integer.toString(i).getBytes()));
                sent.add(r);
                acks.add(producer.send(r));
            }
            producer.flush();
            // The batches really were compressed (the values are repetitive text).
            double rate = (Double) producer.metrics().entrySet().stream()
                    .filter(e -> e.getKey().name().equals("compression-rate-avg")
                            && e.getKey().group().equals("producer-metrics"))
                    .findFirst().orElseThrow().getValue().metricValue();
            if (codec.equals("none")) {
                assertEquals(1.0, rate, 0.001, "compression-rate-avg without a codec");
            } else {
                assertTrue(rate < 0.5, "compression-rate-avg with " + codec + ": " + rate);
            }
        }

        // Acknowledged offsets: per partition 0..n-1, in send order (idempotence keeps order with
        // five in flight), so no record was written twice or skipped.
        Map<Integer, List<Long>> offsets = new HashMap<>();
        Map<String, Long> offsetOfKey = new HashMap<>();
        for (int i = 0; i < RECORDS; i++) {
            RecordMetadata md = acks.get(i).get(60, TimeUnit.SECONDS);
            assertEquals(i % PARTITIONS, md.partition());
            offsets.computeIfAbsent(md.partition(), k -> new ArrayList<>()).add(md.offset());
            offsetOfKey.put("k" + i, md.offset());
        }
        for (int part = 0; part < PARTITIONS; part++) {
            List<Long> got = offsets.get(part);
            for (int j = 0; j < got.size(); j++) {
                assertEquals((long) j, (long) got.get(j), "partition " + part + ": acknowledged offset #" + j);
            }
        }

        // The log end offsets match what was acknowledged.
        Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
        for (int part = 0; part < PARTITIONS; part++) {
            latest.put(new TopicPartition(topic, part), OffsetSpec.latest());
        }
        var ends = admin.listOffsets(latest).all().get();
        for (int part = 0; part < PARTITIONS; part++) {
            assertEquals((long) offsets.get(part).size(), ends.get(new TopicPartition(topic, part)).offset(),
                    "end offset of partition " + part);
        }

        // Everything reads back exactly once with key, value, header and timestamp.
        Map<String, ConsumerRecord<String, String>> read = new HashMap<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(Env.consumerProps(null))) {
            List<TopicPartition> tps = new ArrayList<>(latest.keySet());
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.nanoTime() + Env.TIMEOUT.toNanos();
            while (read.size() < RECORDS && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
                    ConsumerRecord<String, String> prev = read.put(r.key(), r);
                    assertTrue(prev == null, "record " + r.key() + " read twice: offsets " + (prev == null ? -1
                            : prev.offset()) + " and " + r.offset());
                }
            }
        }
        assertEquals(RECORDS, read.size(), "records read back");
        for (int i = 0; i < RECORDS; i++) {
            ProducerRecord<String, String> s = sent.get(i);
            ConsumerRecord<String, String> r = read.get(s.key());
            assertEquals(s.value(), r.value());
            assertEquals((long) s.partition(), (long) r.partition());
            assertEquals((long) offsetOfKey.get(s.key()), r.offset());
            assertEquals((long) s.timestamp(), r.timestamp());
            assertEquals(Integer.toString(i), new String(r.headers().lastHeader("seq").value()));
        }
    }

    /** Two idempotent producers write to one partition at once: each one's records stay in its order. */
    @Test
    void twoIdempotentProducersInterleaveWithoutLossOrDuplicates() throws Exception {
        String topic = Env.topicName("java-idem-two");
        Env.createTopic(admin, topic, 1, Env.replicationFactor(), Map.of());
        Properties p = Env.producerProps();
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, true);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, 1);
        p.put(ProducerConfig.BATCH_SIZE_CONFIG, 1024);
        int perProducer = 1000;
        try (KafkaProducer<String, String> a = new KafkaProducer<>(p);
                KafkaProducer<String, String> b = new KafkaProducer<>(p)) {
            for (int i = 0; i < perProducer; i++) {
                a.send(new ProducerRecord<>(topic, 0, "a", Integer.toString(i)));
                b.send(new ProducerRecord<>(topic, 0, "b", Integer.toString(i)));
            }
            a.flush();
            b.flush();
        }
        Map<String, Integer> next = new HashMap<>(Map.of("a", 0, "b", 0));
        int total = 0;
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(Env.consumerProps(null))) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long deadline = System.nanoTime() + Env.TIMEOUT.toNanos();
            while (total < 2 * perProducer && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
                    assertEquals((long) total, r.offset(), "offsets are contiguous");
                    int want = next.get(r.key());
                    assertEquals(Integer.toString(want), r.value(), "producer " + r.key() + " in order");
                    next.put(r.key(), want + 1);
                    total++;
                }
            }
        }
        assertEquals(Map.of("a", perProducer, "b", perProducer), next);
    }
}
