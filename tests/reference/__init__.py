"""The reference broker (Apache Kafka 4.4.0) for differential tests; see kafka.py."""
