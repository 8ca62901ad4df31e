package chronik.connect;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.source.SourceTask;

/**
 * Tails a file from the byte position of the last committed source offset
 * ({"position": bytes, "line": index of the next line}); a line is sent only once its '\n'
 * is in the file, keyed by itself (so the lines spread over the partitions). At most 500 lines per poll (Connect's batch), 100 ms sleep at end of file.
 */
public class LineSourceTask extends SourceTask {
    private static final int MAX_BATCH = 500;
    private String file;
    private String topic;
    private Map<String, String> partition;
    private long position;
    private long line;
    private RandomAccessFile in;

    @Override public String version() { return "1.0"; }

    @Override
    public void start(Map<String, String> props) {
        file = props.get("file");
        topic = props.get("topic");
        partition = Map.of("filename", file);
        Map<String, Object> committed = context.offsetStorageReader().offset(partition);
        if (committed != null) {
            position = ((Number) committed.get("position")).longValue();
            line = ((Number) committed.get("line")).longValue();
        }
    }

    @Override
    public List<SourceRecord> poll() throws InterruptedException {
        List<SourceRecord> out = new ArrayList<>();
        try {
            if (in == null) {
                in = new RandomAccessFile(file, "r");
            }
            long len = in.length();
            if (len > position) {
                byte[] buf = new byte[(int) Math.min(len - position, 1 << 20)];
                in.seek(position);
                in.readFully(buf);
                int start = 0;
                for (int i = 0; i < buf.length && out.size() < MAX_BATCH; i++) {
                    if (buf[i] == '\n') {
                        String value = new String(buf, start, i - start, StandardCharsets.UTF_8);
                        position += i + 1 - start;
                        line += 1;
                        out.add(new SourceRecord(partition, Map.of("position", position, "line", line),
                            topic, null, Schema.STRING_SCHEMA, value, Schema.STRING_SCHEMA, value));
                        start = i + 1;
                    }
                }
            }
        } catch (IOException e) {
            // The file may not exist yet: read again at the next poll.
        }
        if (out.isEmpty()) {
            Thread.sleep(100);
            return null;
        }
        return out;
    }

    @Override
    public synchronized void stop() {
        try {
            if (in != null) {
                in.close();
            }
        } catch (IOException e) {
            // closing a read-only file: nothing to recover
        }
    }
}
