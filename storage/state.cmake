# The RocksDB state machine, node metadata and checkpoints. Sources and tests are added below.
