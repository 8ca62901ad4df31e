// A small Kafka Streams application for tests/test_ecosystem_streams.py (issue 25, scenario 1):
// exactly-once (exactly_once_v2) stateful aggregation with a repartition step and a KTable join.
//
//   in  (key: source id, value "g<N>:<amount>")
//     -> groupBy(group from the value)             repartition topic <app>-regroup-repartition
//     -> aggregate "count:sum" per group           store "totals", changelog <app>-totals-changelog
//     -> join KTable(ref: group -> label)
//     -> out (key: group, value "<label>|<count>:<sum>")
//
// With the record cache off, each input record makes exactly one update of its group, so a
// read_committed reader of `out` sees each group's count go 1, 2, 3, ... with no repeat (a
// duplicate) and no gap (a lost update), and the last value holds the exact total.
//
// The test reads this process's stdout, one event per line:
//   STATE <new state>                  KafkaStreams state changes (RUNNING, REBALANCING, ...)
//   TXNID <transactional.id>           each transactional producer Streams creates
//   RESTORE_START <topic-partition> <store> <from> <to>
//   RESTORED <topic-partition> <store> <records>
//   THREAD_ERROR <exception>           an uncaught exception (the thread is replaced)
//   TASKS <task id> ...                this instance's active tasks, each time they change
//                                      (task 1_p writes output partition p)
// Streams' own log (WARN and above) goes to stderr.
//
// Usage: EosAggregateApp <bootstrap> <application.id> <state.dir> <in> <ref> <out>
//        <max.poll.interval.ms> <commit.interval.ms>

import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.Consumer;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.Producer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaClientSupplier;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.KeyValueStore;

public final class EosAggregateApp {
    private static synchronized void event(String line) {
        System.out.println(line);
        System.out.flush();
    }

    /** Streams' default clients, plus a TXNID line per producer: the test looks up the
     *  transaction coordinator of these ids. */
    static final class ReportingClients implements KafkaClientSupplier {
        @Override
        public Admin getAdmin(Map<String, Object> config) {
            return Admin.create(config);
        }

        @Override
        public Producer<byte[], byte[]> getProducer(Map<String, Object> config) {
            event("TXNID " + config.get(ProducerConfig.TRANSACTIONAL_ID_CONFIG));
            return new KafkaProducer<>(config, new ByteArraySerializer(), new ByteArraySerializer());
        }

        @Override
        public Consumer<byte[], byte[]> getConsumer(Map<String, Object> config) {
            return new KafkaConsumer<>(config, new ByteArrayDeserializer(), new ByteArrayDeserializer());
        }

        @Override
        public Consumer<byte[], byte[]> getRestoreConsumer(Map<String, Object> config) {
            return getConsumer(config);
        }

        @Override
        public Consumer<byte[], byte[]> getGlobalConsumer(Map<String, Object> config) {
            return getConsumer(config);
        }
    }

    static final class Restores implements StateRestoreListener {
        @Override
        public void onRestoreStart(TopicPartition tp, String store, long from, long to) {
            event("RESTORE_START " + tp + " " + store + " " + from + " " + to);
        }

        @Override
        public void onBatchRestored(TopicPartition tp, String store, long batchEnd, long n) {
        }

        @Override
        public void onRestoreEnd(TopicPartition tp, String store, long total) {
            event("RESTORED " + tp + " " + store + " " + total);
        }
    }

    /** "count:sum" plus one "g<N>:<amount>" record. */
    static String add(String value, String total) {
        String[] t = total.split(":");
        long amount = Long.parseLong(value.substring(value.indexOf(':') + 1));
        return (Long.parseLong(t[0]) + 1) + ":" + (Long.parseLong(t[1]) + amount);
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 8) {
            System.err.println("usage: EosAggregateApp <bootstrap> <application.id> <state.dir> <in> <ref> <out> "
                    + "<max.poll.interval.ms> <commit.interval.ms>");
            System.exit(2);
        }
        String maxPoll = args[6];
        Properties p = new Properties();
        p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(StreamsConfig.APPLICATION_ID_CONFIG, args[1]);
        p.put(StreamsConfig.STATE_DIR_CONFIG, args[2]);
        p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, args[7]);
        // No record cache: one update downstream per input record (the test counts them).
        p.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        // Internal topics (repartition, changelog) replicated on all three brokers, so any one
        // broker may be killed.
        p.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, 3);
        p.put(StreamsConfig.topicPrefix("min.insync.replicas"), "2");
        // No standbys, and any instance counts as caught up: a restarted instance with an empty
        // state dir gets active stateful tasks at once and restores them from the changelog.
        p.put(StreamsConfig.NUM_STANDBY_REPLICAS_CONFIG, 0);
        p.put(StreamsConfig.ACCEPTABLE_RECOVERY_LAG_CONFIG, Long.MAX_VALUE);
        // A paused (SIGSTOPped) or killed instance leaves the group within these bounds; its
        // open transaction is aborted by the coordinator after transaction.timeout.ms.
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_POLL_INTERVAL_MS_CONFIG), maxPoll);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG), maxPoll);
        p.put(StreamsConfig.consumerPrefix(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG), 1000);
        p.put(StreamsConfig.producerPrefix(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG), 10000);

        Serde<String> s = Serdes.String();
        StreamsBuilder b = new StreamsBuilder();
        KTable<String, String> ref = b.table(args[4], Consumed.with(s, s));
        KTable<String, String> totals = b.stream(args[3], Consumed.with(s, s))
                .groupBy((k, v) -> v.substring(0, v.indexOf(':')), Grouped.with("regroup", s, s))
                .aggregate(() -> "0:0", (group, v, total) -> add(v, total),
                        Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as("totals")
                                .withKeySerde(s).withValueSerde(s));
        totals.join(ref, (total, label) -> label + "|" + total).toStream().to(args[5], Produced.with(s, s));

        KafkaStreams streams = new KafkaStreams(b.build(p), p, new ReportingClients());
        streams.setStateListener((now, before) -> event("STATE " + now));
        streams.setGlobalStateRestoreListener(new Restores());
        streams.setUncaughtExceptionHandler(e -> {
            event("THREAD_ERROR " + e);
            return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.REPLACE_THREAD;
        });
        CountDownLatch done = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            streams.close();
            done.countDown();
        }));
        streams.start();
        // The active tasks, checked every 200 ms (not from the state listener, which runs on a
        // stream thread inside Streams' state lock).
        String shown = null;
        while (!done.await(200, java.util.concurrent.TimeUnit.MILLISECONDS)) {
            if (streams.state() != KafkaStreams.State.RUNNING) {
                continue;
            }
            java.util.TreeSet<String> tasks = new java.util.TreeSet<>();
            try {
                streams.metadataForLocalThreads().forEach(t -> t.activeTasks().forEach(
                        m -> tasks.add(m.taskId().toString())));
            } catch (RuntimeException e) {
                continue;  // the state changed meanwhile: next round
            }
            String line = String.join(" ", tasks);
            if (!line.equals(shown)) {
                event("TASKS " + line);
                shown = line;
            }
        }
    }
}
