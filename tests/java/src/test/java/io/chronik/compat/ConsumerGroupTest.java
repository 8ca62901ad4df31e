package io.chronik.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
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
import java.util.Properties;
import java.util.Set;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.MemberDescription;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.FencedInstanceIdException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * Consumer groups with the classic protocol (JoinGroup/SyncGroup/Heartbeat) and the
 * cooperative-sticky assignor: incremental rebalances that move only what must move, commits
 * that a new owner resumes from, and static membership (group.instance.id): a static member that
 * restarts gets its partitions back without a rebalance, and a second instance with the same id
 * fences the first.
 *
 * All members are polled from the test thread in turn (KafkaConsumer is single-threaded); a
 * classic rebalance makes progress in each member's poll.
 */
class ConsumerGroupTest extends WithAdmin {
    private final List<Member> members = new ArrayList<>();


    @AfterEach
    void closeMembers() {
        for (Member m : members) {
            m.close();
        }
    }

    /** One consumer plus what its rebalance listener saw. */
    static final class Member implements ConsumerRebalanceListener {
        final String name;
        final KafkaConsumer<String, String> consumer;
        final List<String> events = new ArrayList<>();
        final List<ConsumerRecord<String, String>> records = new ArrayList<>();
        private boolean closed;

        Member(String name, String group, String instanceId) {
            this.name = name;
            Properties p = Env.consumerProps(group);
            p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
            p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, CooperativeStickyAssignor.class.getName());
            p.put(ConsumerConfig.CLIENT_ID_CONFIG, "java-compat-" + name);
            // Members learn of a rebalance from a heartbeat answer: beat often so tests are quick.
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, 500);
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, 10_000);
            if (instanceId != null) {
                p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instanceId);
            }
            consumer = new KafkaConsumer<>(p);
        }

        void subscribe(String topic) {
            consumer.subscribe(List.of(topic), this);
        }

        /** One short poll; the records it returns are kept and their offsets committed. */
        void poll() {
            var got = consumer.poll(Duration.ofMillis(100));
            if (!got.isEmpty()) {
                got.forEach(records::add);
                consumer.commitSync(Env.TIMEOUT);
            }
        }

        Set<TopicPartition> assignment() {
            return consumer.assignment();
        }

        int generation() {
            return consumer.groupMetadata().generationId();
        }

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            if (!partitions.isEmpty()) {
                events.add("revoked " + sorted(partitions));
            }
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            if (!partitions.isEmpty()) {
                events.add("assigned " + sorted(partitions));
            }
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            events.add("lost " + sorted(partitions));
        }

        void close() {
            if (!closed) {
                closed = true;
                consumer.close(Duration.ofSeconds(10));
            }
        }
    }

    private Member member(String name, String group, String instanceId, String topic) {
        Member m = new Member(name, group, instanceId);
        members.add(m);
        m.subscribe(topic);
        return m;
    }

    /** Polls every member in turn until `cond` holds. */
    private static void pollUntil(List<Member> ms, BooleanSupplier cond, String what) {
        long deadline = System.nanoTime() + Env.TIMEOUT.toNanos();
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                StringBuilder sb = new StringBuilder("timed out waiting for: " + what);
                for (Member m : ms) {
                    sb.append("\n  ").append(m.name).append(" assignment=").append(sorted(m.assignment()))
                            .append(" events=").append(m.events);
                }
                throw new AssertionError(sb.toString());
            }
            for (Member m : ms) {
                m.poll();
            }
        }
    }

    private static List<String> sorted(Collection<TopicPartition> tps) {
        return tps.stream().map(TopicPartition::toString).sorted().collect(Collectors.toList());
    }

    private static Set<TopicPartition> partitions(String topic, int n) {
        Set<TopicPartition> s = new HashSet<>();
        for (int i = 0; i < n; i++) {
            s.add(new TopicPartition(topic, i));
        }
        return s;
    }

    private static void produce(String topic, int partitions, int perPartition, String tag) throws Exception {
        try (KafkaProducer<String, String> p = new KafkaProducer<>(Env.producerProps())) {
            for (int part = 0; part < partitions; part++) {
                for (int i = 0; i < perPartition; i++) {
                    p.send(new ProducerRecord<>(topic, part, tag + "-" + part + "-" + i, "v"));
                }
            }
            p.flush();
        }
    }

    private static boolean balanced(Member a, Member b, Set<TopicPartition> all) {
        Set<TopicPartition> union = new HashSet<>(a.assignment());
        union.addAll(b.assignment());
        return a.assignment().size() == all.size() / 2 && b.assignment().size() == all.size() / 2
                && union.equals(all);
    }

    private static ConsumerGroupDescription describe(String group) throws Exception {
        return admin.describeConsumerGroups(List.of(group)).all().get().get(group);
    }

    @Test
    void cooperativeStickyMovesOnlyWhatMustMoveAndCommitsCarryOver() throws Exception {
        int parts = 6;
        String topic = Env.topicName("java-coop");
        String group = Env.topicName("java-coop-group");
        Env.createTopic(admin, topic, parts, Env.replicationFactor(), Map.of());
        Set<TopicPartition> all = partitions(topic, parts);

        Member a = member("a", group, null, topic);
        pollUntil(List.of(a), () -> a.assignment().equals(all), "a owns every partition");
        int firstGeneration = a.generation();
        Set<TopicPartition> before = new HashSet<>(a.assignment());
        a.events.clear();

        Member b = member("b", group, null, topic);
        pollUntil(List.of(a, b), () -> balanced(a, b, all), "a and b own 3 partitions each");
        assertTrue(a.generation() > firstGeneration, "a rebalance formed a new generation");
        // Cooperative: a gave up exactly the partitions b now owns, and never its whole set.
        assertEquals(List.of("revoked " + sorted(b.assignment())), a.events, "a's rebalance callbacks");
        assertTrue(before.containsAll(a.assignment()));
        assertEquals(List.of("assigned " + sorted(b.assignment())), b.events, "b's rebalance callbacks");

        ConsumerGroupDescription d = describe(group);
        assertEquals(GroupState.STABLE, d.groupState());
        assertEquals("cooperative-sticky", d.partitionAssignor());
        assertEquals(2, d.members().size());
        for (MemberDescription m : d.members()) {
            Member which = m.clientId().equals("java-compat-a") ? a : b;
            assertEquals(which.assignment(), m.assignment().topicPartitions(), "assignment of " + m.clientId());
        }

        // Records produced now are read exactly once by their owner, with commits after each poll.
        produce(topic, parts, 10, "first");
        pollUntil(List.of(a, b), () -> a.records.size() + b.records.size() >= 10 * parts, "60 records read");
        assertEquals(10 * parts, a.records.size() + b.records.size(), "no record read twice");
        for (Member m : List.of(a, b)) {
            for (ConsumerRecord<String, String> r : m.records) {
                assertTrue(m.assignment().contains(new TopicPartition(r.topic(), r.partition())));
            }
        }

        // b leaves: a gets b's partitions added, without giving up its own, and resumes from b's commits.
        Set<TopicPartition> bHad = new HashSet<>(b.assignment());
        a.events.clear();
        a.records.clear();
        b.close();
        pollUntil(List.of(a), () -> a.assignment().equals(all), "a owns every partition again");
        assertEquals(List.of("assigned " + sorted(bHad)), a.events, "a's callbacks when b left");
        produce(topic, parts, 1, "second");
        pollUntil(List.of(a), () -> a.records.size() >= parts, "a reads the 6 new records");
        assertEquals(parts, a.records.size(), "a read only the new records: b's commits carried over");
        assertTrue(a.records.stream().allMatch(r -> r.key().startsWith("second-")), "keys " + a.records);

        // Committed offsets are the end offsets.
        Map<TopicPartition, OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
        all.forEach(tp -> latest.put(tp, OffsetSpec.latest()));
        var ends = admin.listOffsets(latest).all().get();
        for (TopicPartition tp : all) {
            assertNotNull(committed.get(tp), "committed offset of " + tp);
            assertEquals(ends.get(tp).offset(), committed.get(tp).offset(), "committed offset of " + tp);
        }
    }

    /** Two static members (instance-a, instance-b) sharing `topic`'s 4 partitions, 2 each. */
    private Member[] staticPair(String topic, String group) throws Exception {
        Env.createTopic(admin, topic, 4, Env.replicationFactor(), Map.of());
        Member a = member("a", group, "instance-a", topic);
        Member b = member("b", group, "instance-b", topic);
        pollUntil(List.of(a, b), () -> balanced(a, b, partitions(topic, 4)), "a and b own 2 partitions each");
        ConsumerGroupDescription d = describe(group);
        assertEquals(Set.of("instance-a", "instance-b"),
                d.members().stream().map(m -> m.groupInstanceId().orElse("")).collect(Collectors.toSet()));
        return new Member[] {a, b};
    }

    /**
     * A static member's close sends no LeaveGroup: its restart (same group.instance.id, within
     * the session timeout) gets its old partitions back in the same generation, and the other
     * member sees no rebalance at all.
     */
    @Test
    void staticMemberRestartsWithoutRebalance() throws Exception {
        String topic = Env.topicName("java-static");
        String group = Env.topicName("java-static-group");
        Member[] pair = staticPair(topic, group);
        Member a = pair[0];
        Member b = pair[1];
        int generation = a.generation();
        Set<TopicPartition> bHad = new HashSet<>(b.assignment());

        a.events.clear();
        b.close();
        Member b2 = member("b2", group, "instance-b", topic);
        pollUntil(List.of(a, b2), () -> b2.assignment().equals(bHad), "the restarted b owns b's partitions");
        for (int i = 0; i < 10; i++) {
            a.poll(); // a few heartbeats: a rebalance would show here
        }
        assertEquals(generation, b2.generation(), "the restarted static member joined the same generation");
        assertEquals(generation, a.generation(), "a's generation is unchanged");
        assertEquals(List.of(), a.events, "a saw no rebalance");
        assertEquals(2, describe(group).members().size());
    }

    /** A second consumer with a's group.instance.id takes a's place: a is fenced, b is untouched. */
    @Test
    void duplicateStaticInstanceIsFenced() throws Exception {
        String topic = Env.topicName("java-fence");
        String group = Env.topicName("java-fence-group");
        Member[] pair = staticPair(topic, group);
        Member a = pair[0];
        Member b = pair[1];
        Set<TopicPartition> bHad = new HashSet<>(b.assignment());
        Set<TopicPartition> aHad = new HashSet<>(a.assignment());

        Member a2 = member("a2", group, "instance-a", topic);
        FencedInstanceIdException fenced = null;
        long deadline = System.nanoTime() + Env.TIMEOUT.toNanos();
        while (fenced == null && System.nanoTime() < deadline) {
            a2.poll();
            b.poll();
            try {
                a.poll();
            } catch (FencedInstanceIdException e) {
                fenced = e;
            }
        }
        assertNotNull(fenced, "the first instance-a is fenced once a second one joins");
        pollUntil(List.of(a2, b), () -> a2.assignment().equals(aHad), "a2 owns a's partitions");
        for (int i = 0; i < 10; i++) {
            b.poll();
        }
        assertEquals(bHad, b.assignment(), "b keeps its partitions");
        assertTrue(describe(group).members().stream().anyMatch(m -> m.groupInstanceId().equals(Optional.of("instance-a"))),
                "instance-a is still a member");
    }
}
