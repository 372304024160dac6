# Shared build settings: the warnings target, sanitizer flags and the test helper.

# Warnings apply to our own targets only (they link stead_warnings); generated
# protobuf code and third-party headers are compiled without them.
add_library(stead_warnings INTERFACE)
target_compile_options(stead_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wnon-virtual-dtor
  -Woverloaded-virtual -Wold-style-cast -Wimplicit-fallthrough)
if(STEAD_WERROR)
  target_compile_options(stead_warnings INTERFACE -Werror)
endif()
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  target_compile_options(stead_warnings INTERFACE -Wthread-safety)
endif()

if(STEAD_SANITIZE STREQUAL "address")
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
elseif(STEAD_SANITIZE STREQUAL "thread")
  # -Wno-tsan: g++ 12 warns that TSan does not model std::atomic_thread_fence, which
  # Asio's scheduler uses; the warning is about library code and cannot be acted on.
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer -Wno-tsan)
  add_link_options(-fsanitize=thread)
elseif(STEAD_SANITIZE STREQUAL "fuzzer")
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
elseif(NOT STEAD_SANITIZE STREQUAL "")
  message(FATAL_ERROR "STEAD_SANITIZE must be empty, address, thread or fuzzer")
endif()

# stead_test(NAME name SOURCES a_test.cc ... [LIBS ...] LABELS label [TSAN] [TIMEOUT seconds]
#            [TEST_FILTER gtest_filter])
# Builds one GoogleTest binary and registers each of its tests with ctest under LABELS
# (one of unit, sim, cluster, fuzz-replay, soak). Every test binary links gmock_main and
# the shared test helpers. TSAN marks binaries that exercise threads: a ThreadSanitizer
# build (the tsan preset) builds and registers only those. STEAD_TEST_LABELS, when set,
# is a regular expression: binaries whose label it does not match are neither built nor
# registered (the asan preset runs only unit, sim and fuzz-replay). TEST_FILTER leaves out of
# ctest the cases it excludes (e.g. "-Suite.Child": a child process's entry point, which
# would only skip when run on its own). A GTEST_SKIP shows as "Skipped" in ctest
# (gtest_discover_tests sets SKIP_REGULAR_EXPRESSION), and scripts/test lists it.
function(stead_test)
  cmake_parse_arguments(ARG "TSAN" "NAME;TIMEOUT;LABELS;TEST_FILTER" "SOURCES;LIBS" ${ARGN})
  if(NOT ARG_LABELS)
    message(FATAL_ERROR "stead_test(${ARG_NAME}): LABELS is required")
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_LIBS} stead::testing GTest::gmock_main
                        stead_warnings)
  if((STEAD_SANITIZE STREQUAL "thread" AND NOT ARG_TSAN) OR
     (STEAD_TEST_LABELS AND NOT ARG_LABELS MATCHES "^(${STEAD_TEST_LABELS})$"))
    # Still defined, so callers may add properties, but neither built nor registered.
    set_target_properties(${ARG_NAME} PROPERTIES EXCLUDE_FROM_ALL ON)
    return()
  endif()
  # PRE_TEST: tests are listed when ctest runs, not by running binaries during the build.
  set(filter)
  if(ARG_TEST_FILTER)
    set(filter TEST_FILTER ${ARG_TEST_FILTER})
  endif()
  gtest_discover_tests(${ARG_NAME}
    DISCOVERY_MODE PRE_TEST
    DISCOVERY_TIMEOUT 60
    ${filter}
    PROPERTIES LABELS ${ARG_LABELS} TIMEOUT ${ARG_TIMEOUT})
endfunction()

# stead_fuzz_target(NAME name SOURCES ... LIBS ...)
# One libFuzzer target per decoder, fed from tests/fuzz/corpus/<name>/. The `fuzz`
# preset (clang) builds <name>_fuzz, a fuzzer; every other preset builds
# <name>_fuzz_replay, a test (label fuzz-replay) that replays the checked-in corpus and
# seeded mutations of it through the same LLVMFuzzerTestOneInput.
function(stead_fuzz_target)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;LIBS" ${ARGN})
  set(corpus ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${ARG_NAME})
  if(STEAD_SANITIZE STREQUAL "fuzzer")
    add_executable(${ARG_NAME}_fuzz ${ARG_SOURCES})
    target_link_libraries(${ARG_NAME}_fuzz PRIVATE ${ARG_LIBS} stead_warnings)
    target_link_options(${ARG_NAME}_fuzz PRIVATE -fsanitize=fuzzer)
  else()
    stead_test(NAME ${ARG_NAME}_fuzz_replay
      SOURCES ${ARG_SOURCES} ${PROJECT_SOURCE_DIR}/tests/fuzz/replay_main.cc
      LIBS ${ARG_LIBS} LABELS fuzz-replay)
    target_compile_definitions(${ARG_NAME}_fuzz_replay PRIVATE STEAD_FUZZ_CORPUS_DIR="${corpus}")
  endif()
endfunction()
