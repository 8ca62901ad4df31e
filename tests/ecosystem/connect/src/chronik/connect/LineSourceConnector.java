package chronik.connect;

import java.util.List;
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.Task;
import org.apache.kafka.connect.source.SourceConnector;

/**
 * A minimal FileStreamSource: one task tails a file and sends each complete line to a topic.
 * connect-file 4.3.1 (the newest one served here) does not load in connect-runtime 4.4.0
 * (NoClassDefFoundError: org/apache/kafka/common/utils/AppInfoParser, moved to .internals in
 * 4.4.0), so the tests bring their own. Configs: file, topic.
 */
public class LineSourceConnector extends SourceConnector {
    static final ConfigDef CONFIG = new ConfigDef()
        .define("file", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "file to read")
        .define("topic", ConfigDef.Type.STRING, ConfigDef.Importance.HIGH, "topic to write");
    private Map<String, String> props;

    @Override public void start(Map<String, String> props) { this.props = props; }
    @Override public Class<? extends Task> taskClass() { return LineSourceTask.class; }
    @Override public List<Map<String, String>> taskConfigs(int maxTasks) { return List.of(props); }
    @Override public void stop() { }
    @Override public ConfigDef config() { return CONFIG; }
    @Override public String version() { return "1.0"; }
}
