# The RocksDB state machine, node metadata and checkpoints (the data volume).
target_sources(stead_storage PRIVATE
  checkpoint.cc
  checkpoint_files.cc
  node_metadata.cc
  state_machine.cc
  state_machine_db.cc
  state_machine_dir.cc
  state_machine_install.cc)
