"""What the stream, scaling and state benchmarks share: the broker of a run
(`brokers`), the synthetic workload (`workload`), reading and writing Kafka
(`kafka_io`), the processes they start (`processes`), CPU accounting (`cpu`) and the
machine line of their reports (`report`)."""
