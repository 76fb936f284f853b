"""Kafka plumbing the worker and the commands share: client settings, topics, topic
history read back, the embedded Tansu broker and Apache Kafka on loopback."""
