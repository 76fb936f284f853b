"""The imperative shell: Kafka wiring, command-line tools and metrics around `rules`."""
