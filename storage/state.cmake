# The RocksDB state machine, node metadata and checkpoints (the data volume).
target_sources(stead_storage PRIVATE
  apply_cache.cc
  backup_file.cc
  checkpoint.cc
  checkpoint_stream.cc
  checkpoint_files.cc
  content_hash.cc
  node_metadata.cc
  reidentify.cc
  restore.cc
  state_machine.cc
  state_machine_db.cc
  state_machine_dir.cc
  state_machine_install.cc)

stead_test(NAME node_metadata_test SOURCES node_metadata_test.cc LIBS stead::storage LABELS unit)
stead_test(NAME content_hash_test SOURCES content_hash_test.cc LIBS stead::storage LABELS unit)
stead_test(NAME state_machine_test SOURCES state_machine_test.cc LIBS stead::storage LABELS unit)
stead_test(NAME state_machine_replace_test SOURCES state_machine_replace_test.cc
           LIBS stead::storage LABELS unit)
stead_test(NAME restore_test SOURCES restore_test.cc LIBS stead::storage LABELS unit)
# ReidentifyCrash.Child is the entry point of the crash test's child, not a test.
stead_test(NAME reidentify_test SOURCES reidentify_test.cc LIBS stead::storage stead::subprocess
           LABELS unit TEST_FILTER "-ReidentifyCrash.Child")
stead_test(NAME backup_file_test SOURCES backup_file_test.cc LIBS stead::storage LABELS unit)
stead_test(NAME checkpoint_test SOURCES checkpoint_test.cc LIBS stead::storage LABELS unit)
target_compile_definitions(checkpoint_test PRIVATE
  STEAD_MANIFEST_CORPUS_DIR="${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/checkpoint_manifest")
stead_test(NAME checkpoint_stream_test SOURCES checkpoint_stream_test.cc LIBS stead::storage LABELS unit)

# Throughput figures for the state machine and checkpoints; not a test (see the file).
add_executable(checkpoint_bench checkpoint_bench.cc)
target_link_libraries(checkpoint_bench PRIVATE stead::storage stead_warnings)
stead_test(NAME state_machine_concurrency_test SOURCES state_machine_concurrency_test.cc
           LIBS stead::storage LABELS unit TSAN)
# The power-loss case runs its child with the storage fault library of tests/tools. The
# children's entry points (*Child) are not tests.
stead_test(NAME state_machine_crash_test SOURCES state_machine_crash_test.cc
           LIBS stead::storage stead::subprocess stead::fault_tools LABELS unit TIMEOUT 180
           TEST_FILTER "-StateMachineCrash.*Child")
