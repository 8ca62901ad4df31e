package io.chronik.compat;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.DescribeClusterOptions;
import org.apache.kafka.clients.admin.DescribeTopicsOptions;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.junit.jupiter.api.Test;

/**
 * Admin.describeTopics through DescribeTopicPartitions (API 75, which Kafka 3.7+ clients use
 * when the broker advertises it), paged, and the authorized operations of topics and of the
 * cluster: without an authorizer, every operation Kafka defines for the resource type.
 */
class TopicDescriptionTest extends WithAdmin {
    private static final short DESCRIBE_TOPIC_PARTITIONS = 75;

    @Test
    void describeTopicsInPagesWithAuthorizedOperations() throws Exception {
        assertTrue(Env.apiVersions().containsKey(DESCRIBE_TOPIC_PARTITIONS),
                "the broker advertises DescribeTopicPartitions");
        String topic = Env.topicName("java-describe-pages");
        short rf = Env.replicationFactor();
        Env.createTopic(admin, topic, 5, rf, Map.of());

        // Two partitions per answer: the client follows the broker's cursor through 3 answers.
        DescribeTopicsOptions options = new DescribeTopicsOptions()
                .includeAuthorizedOperations(true)
                .partitionSizeLimitPerResponse(2);
        TopicDescription d = admin.describeTopics(List.of(topic), options).allTopicNames().get().get(topic);
        assertEquals(List.of(0, 1, 2, 3, 4),
                d.partitions().stream().map(TopicPartitionInfo::partition).collect(Collectors.toList()));
        for (TopicPartitionInfo p : d.partitions()) {
            assertEquals(rf, p.replicas().size(), "replicas of partition " + p.partition());
            Set<Integer> replicas = p.replicas().stream().map(Node::id).collect(Collectors.toSet());
            assertTrue(replicas.contains(p.leader().id()), "the leader of " + p.partition() + " is a replica");
        }
        assertEquals(EnumSet.of(AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE,
                AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS),
                d.authorizedOperations());

        Throwable missing = Env.failure(() ->
                admin.describeTopics(List.of(Env.topicName("java-describe-missing")), options).allTopicNames().get());
        assertInstanceOf(UnknownTopicOrPartitionException.class, missing);
    }

    @Test
    void describeClusterWithAuthorizedOperations() throws Exception {
        Set<AclOperation> ops = admin.describeCluster(new DescribeClusterOptions().includeAuthorizedOperations(true))
                .authorizedOperations().get();
        assertEquals(EnumSet.of(AclOperation.CREATE, AclOperation.ALTER, AclOperation.DESCRIBE,
                AclOperation.CLUSTER_ACTION, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS,
                AclOperation.IDEMPOTENT_WRITE), ops);
    }
}
