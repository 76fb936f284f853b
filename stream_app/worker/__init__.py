"""The streaming worker: the Faust app, its agents and partition tasks, checkpoints,
recovery, the session reader and the metrics endpoint."""
