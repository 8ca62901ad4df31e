"""The pieces of `make bench` (scripts/bench.py), one responsibility per module:

- common: paths of the binaries, disk settling, JSON runs, peak RSS, machine facts
- chronik_broker: release chronik-server processes (standalone or a three-node cluster)
- kafka_broker: Apache Kafka 4.4.0 (tests/reference/kafka.py) with the JVM settings of its own scripts
- kafka_tools: Kafka's perf tools (ProducerPerformance, ConsumerPerformance, EndToEndLatency) and their output
- clients: one measured client run (chronik-bench or a Kafka tool) against any broker
- chronik_suite: the Chronik-only scenarios with their targets (disk ratios, cold reads)
- compare: the side-by-side scenarios, run in interleaved rounds against Chronik and Kafka
- compare_report: the side-by-side tables, medians, spreads, ratios and the sentences saying where
  Chronik is behind

Standard library only, so `make bench` runs before any venv exists.
"""
