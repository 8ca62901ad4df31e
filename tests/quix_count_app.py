"""A quixstreams app that counts records per key: run by tests/test_quixstreams.py in .venv-quix
(tests/requirements-quix.txt), as a process of its own so that the test can stop and restart it.

It reads JSON values {"seq": N} from the input topic, keeps a count per message key in its
RocksDB state store (state dir given on the command line; quixstreams writes every change to the
compacted changelog topic `changelog__<group>--<input>--default`, one record per key touched
since the last commit), and writes {"count": C, "seq": N} under the same key to the output topic.
At-least-once, committing every COMMIT_EVERY records and every 0.3 s; SIGTERM stops it after a
last commit.

usage: quix_count_app.py BOOTSTRAP GROUP INPUT OUTPUT STATE_DIR COMMIT_EVERY
"""

from __future__ import annotations

import sys

from quixstreams import Application, State


def count(value: dict, state: State) -> dict:
    n = state.get("count", 0) + 1
    state.set("count", n)
    return {"count": n, "seq": value["seq"]}


def main() -> None:
    bootstrap, group, input_topic, output_topic, state_dir, commit_every = sys.argv[1:7]
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        commit_interval=0.3,
        commit_every=int(commit_every),
        state_dir=state_dir,
        loglevel="INFO",
    )
    source = app.topic(input_topic, key_deserializer="str", value_deserializer="json")
    sink = app.topic(output_topic, key_serializer="str", value_serializer="json")
    app.dataframe(source).apply(count, stateful=True).to_topic(sink)
    app.run()


if __name__ == "__main__":
    main()
