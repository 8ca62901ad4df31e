package io.chronik.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.function.BooleanSupplier;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.function.Executable;

/**
 * Where the broker under test is and what it is: the bootstrap servers and the number of brokers
 * come from the system properties {@code bootstrap} and {@code brokers} (surefire passes
 * {@code -Dbootstrap=...} and {@code -Dbrokers=...} on), or the environment variables
 * {@code KAFKA_BOOTSTRAP} and {@code KAFKA_BROKERS}. Without a bootstrap every test is skipped,
 * so {@code make deps} can run the module once to compile it and resolve surefire's providers.
 */
final class Env {
    /** Every client call that waits uses this bound, so a stuck broker fails a test, never hangs it. */
    static final Duration TIMEOUT = Duration.ofSeconds(60);

    private Env() {}

    static String bootstrap() {
        String b = System.getProperty("bootstrap", "");
        if (b.isBlank()) {
            b = System.getenv().getOrDefault("KAFKA_BOOTSTRAP", "");
        }
        Assumptions.assumeFalse(b.isBlank(), "no broker: pass -Dbootstrap=HOST:PORT (and -Dbrokers=N)");
        return b;
    }

    static int brokers() {
        String n = System.getProperty("brokers", "");
        if (n.isBlank()) {
            n = System.getenv().getOrDefault("KAFKA_BROKERS", "1");
        }
        return Integer.parseInt(n.trim());
    }

    /** Replication factor for test topics: every broker up to 3. */
    static short replicationFactor() {
        return (short) Math.min(3, brokers());
    }

    static String topicName(String prefix) {
        return prefix + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    static Admin admin() {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "java-compat-admin");
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, (int) TIMEOUT.toMillis());
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
        return Admin.create(p);
    }

    static Properties producerProps() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "java-compat-producer");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, 60_000);
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, 30_000);
        return p;
    }

    static Properties consumerProps(String groupId) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "java-compat-consumer");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        if (groupId != null) {
            p.put(ConsumerConfig.GROUP_ID_CONFIG, groupId);
        }
        return p;
    }

    /** Creates a topic and waits until its metadata shows a leader for every partition. */
    static void createTopic(Admin admin, String name, int partitions, short rf, Map<String, String> configs)
            throws Exception {
        admin.createTopics(java.util.List.of(new NewTopic(name, partitions, rf).configs(configs)))
                .all().get();
        waitUntil(() -> {
            try {
                TopicDescription d = admin.describeTopics(java.util.List.of(name)).allTopicNames().get().get(name);
                return d.partitions().size() == partitions
                        && d.partitions().stream().allMatch(p -> p.leader() != null && !p.leader().isEmpty());
            } catch (ExecutionException | InterruptedException e) {
                return false; // not yet known to the broker that answered
            }
        }, TIMEOUT, "topic " + name + " has a leader for every partition");
    }

    static void waitUntil(BooleanSupplier cond, Duration timeout, String what) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (!cond.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out after " + timeout + " waiting for: " + what);
            }
            Thread.sleep(100);
        }
    }

    /** The cause of an ExecutionException (what a KafkaFuture failed with). */
    static Throwable failure(Executable call) {
        ExecutionException e = assertThrows(ExecutionException.class, call);
        return e.getCause();
    }

    // ------------------------------------------------------------------ ApiVersions

    private static Map<Short, short[]> apiVersions;

    /**
     * The API keys the first bootstrap broker advertises, with their [min, max] versions, from a
     * raw ApiVersions v0 request (its format is fixed: every broker answers it, and v0 has no
     * tagged fields). Tests of an API the broker does not serve are skipped with
     * {@link #assumeApi}.
     */
    static synchronized Map<Short, short[]> apiVersions() throws IOException {
        if (apiVersions != null) {
            return apiVersions;
        }
        String first = bootstrap().split(",")[0].trim();
        int colon = first.lastIndexOf(':');
        String host = first.substring(0, colon).replace("[", "").replace("]", "");
        int port = Integer.parseInt(first.substring(colon + 1));
        byte[] clientId = "java-compat-probe".getBytes(StandardCharsets.UTF_8);
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress(host, port), 10_000);
            s.setSoTimeout(10_000);
            DataOutputStream out = new DataOutputStream(s.getOutputStream());
            out.writeInt(2 + 2 + 4 + 2 + clientId.length);
            out.writeShort(18); // ApiVersions
            out.writeShort(0); // v0
            out.writeInt(1); // correlation id
            out.writeShort(clientId.length);
            out.write(clientId);
            out.flush();
            DataInputStream in = new DataInputStream(s.getInputStream());
            in.readInt(); // size
            assertEquals(1, in.readInt(), "ApiVersions correlation id");
            assertEquals(0, in.readShort(), "ApiVersions error code");
            int n = in.readInt();
            Map<Short, short[]> m = new HashMap<>();
            for (int i = 0; i < n; i++) {
                short key = in.readShort();
                m.put(key, new short[] {in.readShort(), in.readShort()});
            }
            apiVersions = m;
            return m;
        }
    }

    /**
     * Skips the calling test (with the reason in the report) when the broker does not advertise
     * API {@code key}, after checking that the Java client then fails the admin call the way
     * Kafka defines: with UnsupportedVersionException, before sending anything.
     */
    static void assumeApi(short key, String name, Executable call) throws Exception {
        if (apiVersions().containsKey(key)) {
            return;
        }
        Throwable t = failure(call);
        assertTrue(t instanceof UnsupportedVersionException,
                "the client should fail " + name + " with UnsupportedVersionException, got " + t);
        Assumptions.abort("the broker does not serve " + name + " (API key " + key
                + "); the client fails it with UnsupportedVersionException");
    }
}
