# The Raft log (segmented WAL) and hard state. Sources and tests are added below.
