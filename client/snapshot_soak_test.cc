// Throughput of `steadctl snapshot save` and `snapshot restore` for about a million keys
// (label soak: minutes, not run by default). Loads a one-member cluster of real `stead`
// processes with 1,000,000 keys of 100 bytes, saves it with steadctl, restores the file
// into new volumes, starts the restored member and compares content hashes. Prints the
// figures as one RESULT line; asserts only what must hold (the hashes), never timings.
//
//   ctest --preset soak -R snapshot_soak   (or run build/release/client/snapshot_soak_test)
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "stead/client.h"
#include "tests/testing/process_cluster.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/subprocess.h"

namespace stead {
namespace {

using testing::ProcessCluster;
using testing::Subprocess;

constexpr int kKeys = 1'000'000;
constexpr int kKeysPerTxn = 100;
constexpr int kTxnsInFlight = 32;

std::string Root(const std::string& what) {
  return absl::StrCat(::testing::TempDir(), "/snapshot_soak_", ::getpid(), "_", what);
}

// Runs steadctl with `args`; its stdout (one JSON line) or "" on failure.
std::string SteadctlJson(std::vector<std::string> args) {
  std::vector<std::string> argv = {STEADCTL_BINARY, "--output=json"};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<std::unique_ptr<Subprocess>> process = Subprocess::Start(
      {.argv = argv, .env = {"STEAD_ENDPOINTS="}, .log_path = Root("steadctl.err"),
       .capture_stdout = true, .stdin_path = ""});
  if (!process.ok()) return "";
  absl::StatusOr<std::string> line = (*process)->ReadLine(absl::Minutes(20));
  std::optional<testing::ExitStatus> status = (*process)->WaitFor(absl::Minutes(1));
  if (!line.ok() || !status.has_value() || !status->exited() || status->exit_code != 0) return "";
  return *line;
}

double NumberField(const std::string& json, const std::string& name) {
  const std::string key = absl::StrCat("\"", name, "\":");
  const size_t at = json.find(key);
  double value = 0;
  if (at == std::string::npos) return value;
  const size_t end = json.find_first_of(",}", at + key.size());
  (void)absl::SimpleAtod(json.substr(at + key.size(), end - at - key.size()), &value);
  return value;
}

// kKeys keys "k0000000".."k0999999", 100-byte values that RocksDB cannot compress much,
// written as transactions of kKeysPerTxn puts, kTxnsInFlight at a time.
void Load(Client& client) {
  std::atomic<int> in_flight{0};
  std::atomic<int> failed{0};
  uint64_t state = 0x9e3779b97f4a7c15ull;
  for (int first = 0; first < kKeys; first += kKeysPerTxn) {
    TxnRequest txn;
    for (int key = first; key < first + kKeysPerTxn; ++key) {
      std::string value(100, '\0');
      for (char& c : value) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        c = static_cast<char>('a' + state % 26);
      }
      txn.success.push_back(TxnOp::Put(absl::StrFormat("k%07d", key), value));
    }
    while (in_flight.load() >= kTxnsInFlight) std::this_thread::sleep_for(std::chrono::microseconds(200));
    ++in_flight;
    client.TxnAsync(txn, {.timeout = absl::Seconds(60)}, [&](absl::StatusOr<TxnResult> result) {
      if (!result.ok()) ++failed;
      --in_flight;
    });
  }
  while (in_flight.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_EQ(failed.load(), 0);
}

TEST(SnapshotSoakTest, SaveAndRestoreAMillionKeys) {
  ProcessCluster source(1, Root("source"), STEAD_BINARY);
  source.Start(0);
  ASSERT_TRUE(source.WaitReady({0}));
  ClientOptions options;
  options.endpoints = {source.ClientAddress(0)};
  options.default_timeout = absl::Minutes(5);
  options.attempt_timeout = absl::Minutes(5);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Client> client, Client::Create(options));
  const absl::Time load_started = absl::Now();
  Load(*client);
  const double load_seconds = absl::ToDoubleSeconds(absl::Now() - load_started);
  ASSERT_OK_AND_ASSIGN(const ContentHash source_hash, client->Hash(source.ClientAddress(0)));

  const std::string file = Root("million.stead");
  std::filesystem::remove(file);
  const std::string saved =
      SteadctlJson({"--endpoints=" + source.ClientAddress(0), "snapshot", "save", file});
  ASSERT_FALSE(saved.empty()) << "snapshot save failed; see " << Root("steadctl.err");
  const std::string verified = SteadctlJson({"snapshot", "verify", file});
  ASSERT_FALSE(verified.empty());

  ProcessCluster target(1, Root("target"), STEAD_BINARY);
  const std::string dir = Root("target") + "/stead-0";
  const std::string restored = SteadctlJson(
      {"snapshot", "restore", file, "--data-dir", dir + "/data", "--wal-dir", dir + "/wal",
       "--name", "stead-0", "--peer-addr", absl::StrCat("127.0.0.1:", target.peer_port(0)),
       "--client-addr", target.ClientAddress(0)});
  ASSERT_FALSE(restored.empty()) << "snapshot restore failed; see " << Root("steadctl.err");
  target.Start(0);
  ASSERT_TRUE(target.WaitReady({0}));
  ASSERT_OK_AND_ASSIGN(const ContentHash restored_hash, client->Hash(target.ClientAddress(0)));
  EXPECT_EQ(restored_hash.hash, source_hash.hash);
  EXPECT_EQ(restored_hash.key_count, source_hash.key_count);

  std::printf(
      "RESULT snapshot keys=%d file_mb=%.1f load_s=%.1f save_s=%.2f save_mb_per_s=%.1f "
      "verify_mb_per_s=%.1f restore_s=%.2f restore_mb_per_s=%.1f\n",
      kKeys, NumberField(saved, "bytes") / 1e6, load_seconds, NumberField(saved, "seconds"),
      NumberField(saved, "mb_per_s"), NumberField(verified, "mb_per_s"),
      NumberField(restored, "seconds"), NumberField(restored, "mb_per_s"));
  std::filesystem::remove(file);
}

}  // namespace
}  // namespace stead
