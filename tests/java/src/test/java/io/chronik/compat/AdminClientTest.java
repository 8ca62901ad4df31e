package io.chronik.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.function.Predicate;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.PartitionReassignment;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.ElectionNotNeededException;
import org.apache.kafka.common.errors.InvalidConfigurationException;
import org.apache.kafka.common.errors.InvalidReplicaAssignmentException;
import org.apache.kafka.common.errors.InvalidReplicationFactorException;
import org.apache.kafka.common.errors.NoReassignmentInProgressException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/**
 * Kafka's AdminClient against the broker: topics, cluster, configs, offsets, partition
 * reassignment and leader election, record deletion and log dirs. An API the broker does not
 * advertise in ApiVersions is skipped with the reason (after checking that the client fails it
 * with UnsupportedVersionException).
 */
class AdminClientTest extends WithAdmin {
    private static final short DELETE_RECORDS = 21;
    private static final short DESCRIBE_LOG_DIRS = 35;
    private static final short LIST_OFFSETS = 2;


    private static TopicDescription describeTopic(String topic) throws Exception {
        return admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic);
    }

    private static Config topicConfig(String topic) throws Exception {
        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        return admin.describeConfigs(List.of(r)).all().get().get(r);
    }

    private static List<Integer> nodeIds() throws Exception {
        return admin.describeCluster().nodes().get().stream().map(Node::id).sorted().collect(Collectors.toList());
    }

    private static List<Integer> replicaIds(TopicPartitionInfo p) {
        return p.replicas().stream().map(Node::id).collect(Collectors.toList());
    }

    private static Set<Integer> isrIds(TopicPartitionInfo p) {
        return p.isr().stream().map(Node::id).collect(Collectors.toSet());
    }

    /** Produces `n` records (acks=all) to partition 0 with timestamps base, base+1000, ... */
    private static void produce(String topic, int n, long baseTs, String tag) throws Exception {
        var props = Env.producerProps();
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        try (KafkaProducer<String, String> p = new KafkaProducer<>(props)) {
            for (int i = 0; i < n; i++) {
                p.send(new ProducerRecord<>(topic, 0, baseTs + i * 1000L, tag + i, tag + "-value-" + i)).get();
            }
        }
    }

    private static List<ConsumerRecord<String, String>> readAll(String topic, long expected) throws Exception {
        List<ConsumerRecord<String, String>> out = new ArrayList<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(Env.consumerProps(null))) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long deadline = System.nanoTime() + Env.TIMEOUT.toNanos();
            while (out.size() < expected && System.nanoTime() < deadline) {
                c.poll(Duration.ofMillis(500)).forEach(out::add);
            }
        }
        return out;
    }

    @Test
    void createDescribeAndDeleteTopics() throws Exception {
        String topic = Env.topicName("java-admin-topic");
        short rf = Env.replicationFactor();
        Env.createTopic(admin, topic, 3, rf, Map.of("retention.ms", "3600000"));

        TopicDescription d = describeTopic(topic);
        assertEquals(topic, d.name());
        assertFalse(d.isInternal());
        assertEquals(3, d.partitions().size());
        for (TopicPartitionInfo p : d.partitions()) {
            assertEquals(rf, p.replicas().size(), "replicas of partition " + p.partition());
            assertTrue(replicaIds(p).contains(p.leader().id()), "the leader is a replica");
        }
        // Every replica joins the ISR (followers catch up on an empty log at once).
        Env.waitUntil(() -> {
            try {
                return describeTopic(topic).partitions().stream().allMatch(p -> p.isr().size() == rf);
            } catch (Exception e) {
                return false;
            }
        }, Env.TIMEOUT, "every replica of " + topic + " in the ISR");
        assertTrue(admin.listTopics().names().get().contains(topic));

        Throwable exists = Env.failure(() -> admin.createTopics(List.of(new NewTopic(topic, 1, rf))).all().get());
        assertInstanceOf(TopicExistsException.class, exists);
        short tooMany = (short) (Env.brokers() + 1);
        Throwable badRf = Env.failure(() ->
                admin.createTopics(List.of(new NewTopic(Env.topicName("java-admin-rf"), 1, tooMany))).all().get());
        assertInstanceOf(InvalidReplicationFactorException.class, badRf);

        admin.deleteTopics(List.of(topic)).all().get();
        Env.waitUntil(() -> {
            try {
                return !admin.listTopics().names().get().contains(topic);
            } catch (Exception e) {
                return false;
            }
        }, Env.TIMEOUT, topic + " gone from listTopics");
        Throwable gone = Env.failure(() -> describeTopic(topic));
        assertInstanceOf(UnknownTopicOrPartitionException.class, gone);
    }

    @Test
    void describeCluster() throws Exception {
        DescribeClusterResult c = admin.describeCluster();
        Collection<Node> nodes = c.nodes().get();
        assertEquals(Env.brokers(), nodes.size(), "brokers: " + nodes);
        // Every bootstrap server is one of the brokers, under the address it was reached at.
        Set<String> addresses = nodes.stream().map(n -> n.host() + ":" + n.port()).collect(Collectors.toSet());
        for (String b : Env.bootstrap().split(",")) {
            assertTrue(addresses.contains(b.trim()), b + " is one of the brokers " + addresses);
        }
        Node controller = c.controller().get();
        assertNotNull(controller);
        assertTrue(nodes.contains(controller), "controller " + controller + " is one of " + nodes);
        String clusterId = c.clusterId().get();
        assertNotNull(clusterId);
        assertFalse(clusterId.isBlank());
    }

    @Test
    void describeAndIncrementallyAlterConfigs() throws Exception {
        String topic = Env.topicName("java-admin-configs");
        Env.createTopic(admin, topic, 1, Env.replicationFactor(), Map.of("retention.ms", "3600000"));

        Config cfg = topicConfig(topic);
        ConfigEntry retention = cfg.get("retention.ms");
        assertEquals("3600000", retention.value());
        assertEquals(ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, retention.source());
        ConfigEntry maxBytes = cfg.get("max.message.bytes");
        assertNotNull(maxBytes, "max.message.bytes is described");
        assertTrue(maxBytes.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, "a default: " + maxBytes);

        // Broker configs of every broker.
        for (int id : nodeIds()) {
            ConfigResource br = new ConfigResource(ConfigResource.Type.BROKER, Integer.toString(id));
            Config bc = admin.describeConfigs(List.of(br)).all().get().get(br);
            assertFalse(bc.entries().isEmpty(), "broker " + id + " describes its configs");
        }

        ConfigResource r = new ConfigResource(ConfigResource.Type.TOPIC, topic);
        admin.incrementalAlterConfigs(Map.of(r, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET),
                new AlterConfigOp(new ConfigEntry("max.message.bytes", "2000000"), AlterConfigOp.OpType.SET))))
                .all().get();
        // Kafka applies a change on each broker as its metadata catches up: poll for it.
        awaitConfig(topic, c -> "7200000".equals(c.get("retention.ms").value())
                && "2000000".equals(c.get("max.message.bytes").value())
                && c.get("max.message.bytes").source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                "retention.ms=7200000 and max.message.bytes=2000000 set");

        // DELETE returns a key to its default; the other override stays.
        admin.incrementalAlterConfigs(Map.of(r, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", ""), AlterConfigOp.OpType.DELETE))))
                .all().get();
        awaitConfig(topic, c -> c.get("retention.ms").source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG
                && "2000000".equals(c.get("max.message.bytes").value()),
                "retention.ms back to its default, max.message.bytes still 2000000");

        // An invalid value is refused with INVALID_CONFIG and changes nothing.
        Throwable bad = Env.failure(() -> admin.incrementalAlterConfigs(Map.of(r, List.of(
                new AlterConfigOp(new ConfigEntry("retention.ms", "not-a-number"), AlterConfigOp.OpType.SET))))
                .all().get());
        assertInstanceOf(InvalidConfigurationException.class, bad);
        Config after = topicConfig(topic);
        assertEquals("2000000", after.get("max.message.bytes").value());
        assertTrue(after.get("retention.ms").source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                "retention.ms unchanged: " + after.get("retention.ms"));
    }

    /** Polls describeConfigs (any broker may answer) until `cond` holds for the topic's configs. */
    private static void awaitConfig(String topic, Predicate<Config> cond, String what) throws Exception {
        Config[] last = {null};
        try {
            Env.waitUntil(() -> {
                try {
                    last[0] = topicConfig(topic);
                    return cond.test(last[0]);
                } catch (Exception e) {
                    return false;
                }
            }, Env.TIMEOUT, what);
        } catch (AssertionError e) {
            throw new AssertionError(e.getMessage() + "; last described: " + last[0], e);
        }
    }

    @Test
    void listOffsetsEarliestLatestAndByTimestamp() throws Exception {
        String topic = Env.topicName("java-admin-offsets");
        Env.createTopic(admin, topic, 1, Env.replicationFactor(), Map.of());
        TopicPartition tp = new TopicPartition(topic, 0);
        assertEquals(0L, admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get().offset(),
                "an empty partition ends at 0");

        long base = System.currentTimeMillis() - 3_600_000;
        produce(topic, 10, base, "k");
        assertEquals(0L, admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get().offset());
        assertEquals(10L, admin.listOffsets(Map.of(tp, OffsetSpec.latest())).partitionResult(tp).get().offset());
        // The earliest offset whose timestamp is >= the target.
        var byTs = admin.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(base + 3500))).partitionResult(tp).get();
        assertEquals(4L, byTs.offset());
        assertEquals(base + 4000, byTs.timestamp());
        var exact = admin.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(base + 7000))).partitionResult(tp).get();
        assertEquals(7L, exact.offset());
        // Past the newest timestamp: no offset (-1).
        var after = admin.listOffsets(Map.of(tp, OffsetSpec.forTimestamp(base + 60_000))).partitionResult(tp).get();
        assertEquals(-1L, after.offset());
    }

    @Test
    void listOffsetsMaxTimestamp() throws Exception {
        short[] range = Env.apiVersions().get(LIST_OFFSETS);
        String topic = Env.topicName("java-admin-maxts");
        Env.createTopic(admin, topic, 1, Env.replicationFactor(), Map.of());
        TopicPartition tp = new TopicPartition(topic, 0);
        if (range[1] < 7) {
            // OffsetSpec.maxTimestamp() needs ListOffsets v7 (KIP-734).
            Throwable t = Env.failure(() -> admin.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).all().get());
            assertInstanceOf(UnsupportedVersionException.class, t);
            Assumptions.abort("the broker serves ListOffsets up to v" + range[1]
                    + "; OffsetSpec.maxTimestamp() needs v7");
        }
        long base = System.currentTimeMillis() - 3_600_000;
        var props = Env.producerProps();
        try (KafkaProducer<String, String> p = new KafkaProducer<>(props)) {
            long[] ts = {base + 1000, base + 5000, base + 2000};
            for (long t : ts) {
                p.send(new ProducerRecord<>(topic, 0, t, "k", "v")).get();
            }
        }
        var max = admin.listOffsets(Map.of(tp, OffsetSpec.maxTimestamp())).partitionResult(tp).get();
        assertEquals(1L, max.offset());
        assertEquals(base + 5000, max.timestamp());
    }

    /**
     * Reassignment and preferred-leader election. With three brokers: a partition on two of them
     * moves to the third plus one of the two, with the new broker first; the data moves along; a
     * preferred election then makes the new broker the leader. With one broker: a move onto the
     * same replica, and the refusals every broker count shares.
     */
    @Test
    void reassignPartitionsAndElectLeaders() throws Exception {
        String topic = Env.topicName("java-admin-reassign");
        short rf = (short) Math.min(2, Env.brokers());
        Env.createTopic(admin, topic, 1, rf, Map.of());
        TopicPartition tp = new TopicPartition(topic, 0);
        List<Integer> nodes = nodeIds();
        Env.waitUntil(() -> {
            try {
                return isrIds(describeTopic(topic).partitions().get(0)).size() == rf;
            } catch (Exception e) {
                return false;
            }
        }, Env.TIMEOUT, "both replicas in the ISR");
        TopicPartitionInfo before = describeTopic(topic).partitions().get(0);
        List<Integer> replicas = replicaIds(before);
        assertEquals(replicas.get(0), (Integer) before.leader().id(), "a new partition is led by its first replica");

        // The preferred replica already leads: nothing to elect.
        var none = admin.electLeaders(ElectionType.PREFERRED, Set.of(tp)).partitions().get();
        assertInstanceOf(ElectionNotNeededException.class, none.get(tp).orElse(null), "election result " + none);

        // Refusals: an unknown broker, and cancelling a partition that is not being moved.
        int unknownBroker = nodes.get(nodes.size() - 1) + 100;
        Throwable bad = Env.failure(() -> admin.alterPartitionReassignments(Map.of(tp,
                Optional.of(new NewPartitionReassignment(List.of(unknownBroker))))).all().get());
        assertInstanceOf(InvalidReplicaAssignmentException.class, bad);
        Throwable noMove = Env.failure(() ->
                admin.alterPartitionReassignments(Map.of(tp, Optional.empty())).all().get());
        assertInstanceOf(NoReassignmentInProgressException.class, noMove);

        produce(topic, 20, System.currentTimeMillis(), "before");
        List<Integer> target;
        if (Env.brokers() >= 3) {
            int spare = nodes.stream().filter(n -> !replicas.contains(n)).findFirst().orElseThrow();
            target = List.of(spare, replicas.get(0));
        } else {
            target = replicas;
        }
        admin.alterPartitionReassignments(Map.of(tp, Optional.of(new NewPartitionReassignment(target))))
                .all().get();
        Env.waitUntil(() -> {
            try {
                Map<TopicPartition, PartitionReassignment> ongoing =
                        admin.listPartitionReassignments(Set.of(tp)).reassignments().get();
                TopicPartitionInfo p = describeTopic(topic).partitions().get(0);
                return ongoing.isEmpty() && replicaIds(p).equals(target) && isrIds(p).equals(new HashSet<>(target));
            } catch (Exception e) {
                return false;
            }
        }, Env.TIMEOUT, topic + " moved to " + target + " with every replica in the ISR");
        assertTrue(admin.listPartitionReassignments().reassignments().get().keySet().stream()
                .noneMatch(p -> p.topic().equals(topic)), "no reassignment of " + topic + " listed");

        if (Env.brokers() >= 3) {
            // The moved partition's preferred replica is the new broker: elect it.
            var elected = admin.electLeaders(ElectionType.PREFERRED, Set.of(tp)).partitions().get();
            Optional<Throwable> err = elected.get(tp);
            assertTrue(err.isEmpty() || err.get() instanceof ElectionNotNeededException, "election: " + err);
            Env.waitUntil(() -> {
                try {
                    return describeTopic(topic).partitions().get(0).leader().id() == target.get(0);
                } catch (Exception e) {
                    return false;
                }
            }, Env.TIMEOUT, "broker " + target.get(0) + " leads " + tp);
        }

        // The records written before the move are all there, and the partition takes writes.
        produce(topic, 10, System.currentTimeMillis(), "after");
        List<ConsumerRecord<String, String>> all = readAll(topic, 30);
        assertEquals(30, all.size());
        for (int i = 0; i < 30; i++) {
            assertEquals((long) i, all.get(i).offset());
            assertEquals(i < 20 ? "before" + i : "after" + (i - 20), all.get(i).key());
        }
    }

    @Test
    void deleteRecords() throws Exception {
        String topic = Env.topicName("java-admin-delrec");
        Env.createTopic(admin, topic, 1, Env.replicationFactor(), Map.of());
        TopicPartition tp = new TopicPartition(topic, 0);
        Env.assumeApi(DELETE_RECORDS, "DeleteRecords", () ->
                admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(1))).all().get());
        produce(topic, 10, System.currentTimeMillis(), "k");
        var low = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(4))).lowWatermarks().get(tp).get();
        assertEquals(4L, low.lowWatermark());
        assertEquals(4L, admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get().offset());
        List<ConsumerRecord<String, String>> rest = readAll(topic, 6);
        assertEquals(6, rest.size());
        assertEquals(4L, rest.get(0).offset());
    }

    @Test
    void describeLogDirs() throws Exception {
        String topic = Env.topicName("java-admin-logdirs");
        Env.createTopic(admin, topic, 1, Env.replicationFactor(), Map.of());
        List<Integer> nodes = nodeIds();
        Env.assumeApi(DESCRIBE_LOG_DIRS, "DescribeLogDirs", () -> admin.describeLogDirs(nodes).allDescriptions().get());
        produce(topic, 10, System.currentTimeMillis(), "k");
        TopicPartition tp = new TopicPartition(topic, 0);
        Set<Integer> replicas = new HashSet<>(replicaIds(describeTopic(topic).partitions().get(0)));
        Map<Integer, Map<String, LogDirDescription>> dirs;
        try {
            dirs = admin.describeLogDirs(nodes).allDescriptions().get();
        } catch (ExecutionException e) {
            throw new AssertionError("describeLogDirs failed", e.getCause());
        }
        Map<Integer, Long> sizes = new HashMap<>();
        for (int id : nodes) {
            Map<String, LogDirDescription> byPath = dirs.get(id);
            assertNotNull(byPath, "log dirs of broker " + id);
            assertFalse(byPath.isEmpty(), "broker " + id + " has a log dir");
            for (LogDirDescription d : byPath.values()) {
                assertTrue(d.error() == null, "log dir error on broker " + id + ": " + d.error());
                if (d.replicaInfos().containsKey(tp)) {
                    sizes.put(id, d.replicaInfos().get(tp).size());
                }
            }
        }
        assertEquals(replicas, sizes.keySet(), "brokers that hold " + tp);
        assertTrue(sizes.values().stream().allMatch(s -> s > 0), "replica sizes " + sizes);
    }
}
