# The Raft log (segmented WAL) and hard state on the WAL volume.
target_sources(stead_storage PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/file.cc
  ${CMAKE_CURRENT_LIST_DIR}/segment.cc
  ${CMAKE_CURRENT_LIST_DIR}/wal.cc
  ${CMAKE_CURRENT_LIST_DIR}/wal_record.cc
  ${CMAKE_CURRENT_LIST_DIR}/wal_recovery.cc)

stead_test(NAME file_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/file_test.cc
           LIBS stead::storage LABELS unit)
stead_test(NAME wal_record_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/wal_record_test.cc
           LIBS stead::storage LABELS unit)
# TSAN: the writer thread, concurrent readers and callbacks run under ThreadSanitizer.
stead_test(NAME wal_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/wal_test.cc
           LIBS stead::storage LABELS unit TSAN)

# Group-commit and recovery figures on this machine's disk (not a test; run by hand).
add_executable(wal_bench ${CMAKE_CURRENT_LIST_DIR}/wal_bench.cc)
target_link_libraries(wal_bench PRIVATE stead::storage stead_warnings)
