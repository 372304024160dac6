#include "tests/testing/process_cluster.h"

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/testing/kv_test_client.h"

namespace stead::testing {

std::string ClusterTestRoot(const std::string& suite) {
  return absl::StrCat(::testing::TempDir(), "/", suite, "_", ::getpid(), "_",
                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
}

ProcessCluster::ProcessCluster(int initial_size, std::string root, std::string binary)
    : initial_size_(initial_size), root_(std::move(root)), binary_(std::move(binary)) {
  std::filesystem::remove_all(root_);
  std::filesystem::create_directories(root_);
  for (int i = 0; i < kMaxMembers; ++i) {
    for (uint16_t* port : {&client_[i], &peer_[i], &http_[i]}) {
      *port = FreeLoopbackPort().value();
    }
  }
}

ProcessCluster::~ProcessCluster() {
  processes_.clear();  // SIGKILL and reap whatever still runs
  if (!::testing::Test::HasFailure()) std::filesystem::remove_all(root_);
}

std::string ProcessCluster::Name(int ordinal) const { return absl::StrCat("stead-", ordinal); }

std::string ProcessCluster::LogPath(int ordinal) const {
  return absl::StrCat(root_, "/", Name(ordinal), ".log");
}

std::string ProcessCluster::DataDir(int ordinal) const {
  return absl::StrCat(root_, "/", Name(ordinal), "/data");
}

std::string ProcessCluster::WalDir(int ordinal) const {
  return absl::StrCat(root_, "/", Name(ordinal), "/wal");
}

std::string ProcessCluster::ClientAddress(int ordinal) const {
  return absl::StrCat("127.0.0.1:", client_[ordinal]);
}

std::vector<std::string> ProcessCluster::ClientEndpoints(int count) const {
  std::vector<std::string> endpoints;
  for (int i = 0; i < count; ++i) endpoints.push_back(ClientAddress(i));
  return endpoints;
}

void ProcessCluster::Wipe(int ordinal) {
  ASSERT_FALSE(Running(ordinal)) << Name(ordinal) << " is running";
  std::filesystem::remove_all(DataDir(ordinal));
  std::filesystem::remove_all(WalDir(ordinal));
}

void ProcessCluster::Start(int ordinal) { StartUnderName(ordinal, Name(ordinal)); }

void ProcessCluster::StartUnderName(int ordinal, const std::string& name) {
  std::vector<std::string> peers;
  for (int i = 0; i < kMaxMembers; ++i) {
    peers.push_back(absl::StrCat(Name(i), "=127.0.0.1:", peer_[i]));
  }
  std::vector<std::string> argv = {
      binary_,
      "--name=" + name,
      "--data-dir=" + DataDir(ordinal),
      "--wal-dir=" + WalDir(ordinal),
      absl::StrCat("--client-addr=127.0.0.1:", client_[ordinal]),
      absl::StrCat("--peer-addr=127.0.0.1:", peer_[ordinal]),
      absl::StrCat("--http-addr=127.0.0.1:", http_[ordinal]),
      "--advertise-host=127.0.0.1",
      "--peers=" + absl::StrJoin(peers, ","),
      absl::StrCat("--initial-cluster-size=", initial_size_),
      absl::StrCat("--tick-interval=", kClusterTickMs, "ms"),
      "--shutdown-timeout=10s",
  };
  argv.insert(argv.end(), extra_flags_.begin(), extra_flags_.end());
  absl::StatusOr<std::unique_ptr<Subprocess>> process =
      Subprocess::Start(std::move(argv), {}, LogPath(ordinal));
  ASSERT_TRUE(process.ok()) << process.status();
  processes_[ordinal] = std::move(process).value();
}

void ProcessCluster::Signal(int ordinal, int signal) {
  ASSERT_TRUE(processes_.at(ordinal)->Signal(signal).ok());
}

void ProcessCluster::Kill(int ordinal) {
  processes_.at(ordinal)->Kill();
  processes_.erase(ordinal);
}

std::optional<ExitStatus> ProcessCluster::Terminate(int ordinal, absl::Duration timeout) {
  processes_.at(ordinal)->Signal(SIGTERM).IgnoreError();  // reaped below either way
  std::optional<ExitStatus> status = processes_.at(ordinal)->WaitFor(timeout);
  processes_.erase(ordinal);
  return status;
}

bool ProcessCluster::Running(int ordinal) {
  return processes_.count(ordinal) && processes_.at(ordinal)->running();
}

std::optional<ExitStatus> ProcessCluster::ExitStatusOf(int ordinal) {
  if (!processes_.count(ordinal)) return std::nullopt;
  return processes_.at(ordinal)->WaitFor(absl::ZeroDuration());
}

int ProcessCluster::HttpStatus(int ordinal, const std::string& path) const {
  absl::StatusOr<HttpResponse> response = HttpGet("127.0.0.1", http_[ordinal], path, absl::Seconds(1));
  return response.ok() ? response->status_code : 0;
}

std::optional<double> ProcessCluster::Metric(int ordinal, const std::string& name) const {
  absl::StatusOr<HttpResponse> response =
      HttpGet("127.0.0.1", http_[ordinal], "/metrics", absl::Seconds(1));
  if (!response.ok() || response->status_code != 200) return std::nullopt;
  for (absl::string_view line : absl::StrSplit(response->body, '\n')) {
    if (!absl::StartsWith(line, name + " ")) continue;
    double value = 0;
    if (absl::SimpleAtod(line.substr(name.size() + 1), &value)) return value;
  }
  return std::nullopt;
}

int ProcessCluster::Leader(const std::vector<int>& members) const {
  for (int ordinal : members) {
    if (Metric(ordinal, "stead_raft_is_leader") == 1.0) return ordinal;
  }
  return -1;
}

int ProcessCluster::WaitForLeader(const std::vector<int>& members, absl::Duration timeout) const {
  int leader = -1;
  Eventually([&] { return (leader = Leader(members)) >= 0; }, timeout);
  return leader;
}

bool ProcessCluster::WaitReady(const std::vector<int>& members, absl::Duration timeout) const {
  return Eventually(
      [&] { return std::all_of(members.begin(), members.end(), [&](int i) { return Ready(i); }); },
      timeout);
}

int ProcessCluster::StartAndWaitForLeader(const std::vector<int>& members) {
  for (int ordinal : members) Start(ordinal);
  if (!WaitReady(members)) return -1;
  return WaitForLeader(members);
}

bool ProcessCluster::WaitHashesEqual(const std::vector<int>& members,
                                     absl::Duration timeout) const {
  return Eventually(
      [&] {
        std::optional<pb::HashResponse> first;
        for (int member : members) {
          KvTestClient client({ClientAddress(member)});
          pb::ClientRequest request;
          request.mutable_hash();
          absl::StatusOr<pb::ClientResponse> response = client.Call(request, absl::Seconds(2));
          if (!response.ok() || response->has_error()) return false;
          const pb::HashResponse& hash = response->hash();
          if (!first) {
            first = hash;
          } else if (hash.applied_index() != first->applied_index() ||
                     hash.hash() != first->hash()) {
            return false;
          }
        }
        return true;
      },
      timeout);
}

std::string ProcessCluster::Log(int ordinal) const {
  return ReadFileToString(LogPath(ordinal)).value_or("");
}

}  // namespace stead::testing
