"""Qlik Sense adapters: proxy UDP events and audit logs in, session events out; QRS
usage against tokenpool's own count (reconcile).

Pure modules (`activity`, `udp_format`, `audit_log`, `keepalive`, `group_mapping`,
`qrs`, `reconcile`) do no I/O and read no clock; the shells (`udp_listener`,
`log_follower`, `ingest`, `qrs_client`, `sink`, `cli`) wire them to sockets, files,
HTTPS and Kafka.
"""
