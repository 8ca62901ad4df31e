"""Fault-injection suite (issue 15): a workload against a 3-node cluster in network namespaces,
a nemesis that injects faults, and a checker that reads everything back.

    history       what was sent and acknowledged, what faults happened when (plain data)
    workload      idempotent acks=all producers that record every send attempt and its outcome
    nemesis       the faults: network partitions, SIGKILL, SIGSTOP, disk full
    walread       a small reader of the WAL segment files (docs/wal-format.md)
    readback      the final state: every partition consumed from offset 0, every replica's WAL
    checker       acknowledged loss, duplicates, reordering, offset moves, replica divergence
    availability  per fault: the longest window without an acknowledgement, heal to first ack
    campaign      runs it all; report writes docs/reliability.md; `python -m chaos` is `make chaos`
"""
