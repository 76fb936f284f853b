"""Every wait, period and deadline of the worker, in one place, each with the reason it
exists and the broker behaviour it answers.

Seconds unless the name says `_MS`. They are tuned together: the merge's waits must
outlast a fetch, a catch-up must not start while a fetch is merely slow, and a
rebalance's deadlines must stay inside the group's session timeout. Counts that are
not times (batch sizes, byte limits) stay with the code they bound.
"""

# -- checkpoints -------------------------------------------------------------------

CHECKPOINT_LINGER = 0.05
"""Seconds an applied input may wait for its checkpoint. Each checkpoint is one producer
flush (and under exactly_once one transaction): batching inputs for this long turns a
broker round trip per input into one per batch, while the outputs of a login still
leave well within a tenth of a second."""

WRITES_SETTLE = 60.0
"""Seconds a rebalance waits for this worker's queued state records to reach the
changelog (at_least_once) before the worker stops instead. The table's local copy has
them at once, the changelog only once the broker acknowledged them; read back without
them, a partition would mix two checkpoints. A broker that acknowledges nothing for a
minute is down or partitioned away, and a restart reads a consistent changelog."""

STOP_SETTLE = 3.0
"""Seconds a stopping worker waits for its queued records (and its open transactions)
to be acknowledged. Whatever is not by then is as after a crash: the changelog is read
back whole and the inputs past it applied again. Orchestrators kill a worker that has
not stopped some seconds after SIGTERM (the demo after 5, Kubernetes after 30)."""

TRANSACTION_TIMEOUT_MS = 30_000
"""How long the broker lets a transaction stay open (exactly_once): a worker killed
mid-checkpoint holds back `read_committed` readers of its partitions this long at most,
when no other worker takes the partition over (which aborts it at once)."""

TRANSACTION_RETRY_AFTER = 1.0
"""Seconds before a checkpoint the broker refused is written again: the refusals that
pass (a partition's leader moving, a coordinator loading) pass within about a second."""

# -- ticks and the ledger's marks ----------------------------------------------------

TICK_WAKE_MAX = 0.1
"""Longest gap between two rounds of ticks (half the idle wait if that is shorter): a
tick is what lets a quiet partition checkpoint, end an idle wait and (live) advance its
clock, so nothing the merge holds waits much longer than the broker's own fetch."""

CATCH_UP_EVERY = 1.0
"""Seconds between two looks for inputs that do not arrive. Each look may ask the broker
for end offsets; once a second is cheap and far below `CATCH_UP_IDLE`."""

LEDGER_MARK_EVERY = 0.25
"""Seconds between two "nothing pending" marks of an idle ledger on every grants
partition. A merge waiting for grants goes on only on a mark newer than its wait, so
this bounds how long a login waits for the ledger's word when no allocation is made."""

LEDGER_MARK_MARGIN = 0.6
"""Seconds a ledger mark must postdate a wait for grants: a highwater is only as fresh
as the fetch that brought it (up to the session reader's fetch wait, plus a broker's
slow answer), so a mark sent just after the wait began may still predate a grant."""

LEDGER_BATCH_WITHIN = 0.05
"""Seconds the ledger agent gathers allocations into one batch: a batch is decided and
written as one ledger record, so a burst of allocations costs one write, not hundreds."""

# -- the event-time merge's waits ------------------------------------------------------

GRANTS_WAIT_LIMIT = 60.0
"""Seconds the merge waits for the ledger's word before it goes on without grants:
long enough for the ledger to move to another worker after a crash (the session
timeout), short enough that a ledger that stopped speaking is noticed, logged and does
not hold every pool. A grant that comes later applies at its group's clock."""

STUCK_FETCH_IDLE_WAITS = 10
"""Idle waits (`--idle-wait`) the merge waits for an input the broker says still has
records to fetch, before it goes on without it: a fetch stuck behind a leader election
or a throttled broker must not hold a pool for ever (Kafka Streams' `max.task.idle.ms`
answers the same)."""

# -- catching up inputs that do not arrive ---------------------------------------------

CATCH_UP_IDLE = 5.0
"""Seconds an agent must have received nothing before inputs that do not arrive are
read again from the state's offsets. In a backfill records fetched long ago may still
wait their turn in Faust's buffers; only a silent agent proves they are not coming."""

CATCH_UP_AFTER = 5.0
"""Seconds records past the applied ones may stay out of sight before a rewind: after a
rebalance Faust can count a jump in offsets as acknowledged and never fetch the records
in between; a fetch that is merely slow brings them well within this."""

RESEEK_AFTER = 0.5
"""Seconds after which a rewind not yet seen through is made again: records fetched
before the seek may still come, and one passing while it is made undoes it."""

LOOK_EVERY = 1.0
"""Seconds between two looks into the same partition for records past the applied
(transaction markers occupy offsets and hold no record: only a look tells them apart
from records that did not arrive)."""

PROBE_STALL = 10.0
"""Seconds without a record before a look into a partition gives up: a broker that
answers nothing this long is failing over, and the next look starts afresh."""

# -- reading ---------------------------------------------------------------------------

SESSION_FETCH_WAIT_MS = 100
"""Longest a session-topic fetch waits for records: also how soon an assignment change
takes effect on the session reader, and how stale a highwater it reports can be."""

SESSION_RETRY_AFTER = 1.0
"""Seconds before the session reader reads again after the broker refused a fetch (a
leader moving, a partition not yet created on a restarted Tansu)."""

RESTORE_FETCH_WAIT_MS = 50
"""How long the broker may hold a changelog fetch that finds nothing (an empty
partition): a restore reads to known end offsets, so a long wait only delays the end."""

# -- start and group membership --------------------------------------------------------

PREFLIGHT_TIMEOUT = 60.0
"""Seconds the worker waits for the broker's answer before it starts: a broker that is
still starting (compose brings both up at once) answers within this."""

HEARTBEATS_PER_SESSION = 6
"""Heartbeats the consumer sends per session timeout (no faster than
`MIN_HEARTBEAT_INTERVAL`): several may be lost before the group coordinator counts the
member dead, as Kafka's own default (3 s against 45 s) allows."""

MIN_HEARTBEAT_INTERVAL = 0.5
"""Shortest heartbeat interval: a short session timeout in tests must not turn
heartbeats into a load on the coordinator."""

PRODUCER_LINGER = 0.005
"""Seconds the producer gathers records into one request: a checkpoint's records leave
together, and a lone output is not held back noticeably."""

TABLE_CLEANUP_INTERVAL = 3600.0
"""Seconds between Faust's table cleanups: the tables hold no windowed data, so the
cleanup has nothing to do and should not run often."""
