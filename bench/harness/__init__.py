"""What the benchmarks share: the broker of a run (`brokers`), the synthetic workloads
(`workload`, and `pool_workload` for one pool), reading and writing Kafka
(`kafka_io`), the processes they start (`processes`), CPU accounting (`cpu`), timed
runs in this process (`timing`) and the machine line of their reports (`report`)."""
