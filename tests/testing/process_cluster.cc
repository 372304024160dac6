#include "tests/testing/process_cluster.h"

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <utility>

#include "absl/strings/escaping.h"
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

int64_t ProcessCluster::UnreadClientBytes(int ordinal) const {
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // the header
  // Addresses are printed as little-endian hex words: 127.0.0.1 is 0100007F.
  const std::string local = absl::StrCat("0100007F:", absl::Hex(client_[ordinal], absl::kZeroPad4));
  constexpr absl::string_view kEstablished = "01";
  int64_t unread = 0;
  while (std::getline(table, line)) {
    // sl local_address rem_address st tx_queue:rx_queue ...
    const std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() < 5 || !absl::EqualsIgnoreCase(fields[1], local) ||
        fields[3] != kEstablished) {
      continue;
    }
    const std::vector<absl::string_view> queues = absl::StrSplit(fields[4], ':');
    int64_t queued = 0;
    if (queues.size() == 2 && absl::SimpleHexAtoi(queues[1], &queued)) unread += queued;
  }
  return unread;
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

bool ProcessCluster::HashesEqualNow(const std::vector<int>& members, std::string* answers) const {
  std::optional<pb::HashResponse> first;
  bool equal = true;
  std::vector<std::string> lines;
  for (int member : members) {
    KvTestClient client({ClientAddress(member)});
    pb::ClientRequest request;
    request.mutable_hash();
    absl::StatusOr<pb::ClientResponse> response = client.Call(request, absl::Seconds(2));
    absl::Status status = response.status();
    if (response.ok() && response->has_error()) status = StatusFromError(response->error());
    if (!status.ok()) {
      equal = false;
      lines.push_back(absl::StrCat(Name(member), ": no hash (", status.ToString(), ")"));
      continue;
    }
    const pb::HashResponse& hash = response->hash();
    lines.push_back(absl::StrCat(Name(member), ": hash ", absl::Hex(hash.hash()), " at index ",
                                 hash.applied_index()));
    if (!first) {
      first = hash;
    } else if (hash.applied_index() != first->applied_index() || hash.hash() != first->hash()) {
      equal = false;
    }
  }
  if (answers != nullptr) *answers = absl::StrJoin(lines, "; ");
  return equal;
}

bool ProcessCluster::WaitHashesEqual(const std::vector<int>& members,
                                     absl::Duration timeout) const {
  return Eventually([&] { return HashesEqualNow(members, nullptr); }, timeout);
}

namespace {

// At most this many keys named per member and kind in a report.
constexpr int kKeysNamed = 5;

// `value` for a report: quoted, long ones cut.
std::string Shown(absl::string_view value) {
  constexpr size_t kShown = 40;
  if (value.size() <= kShown) return absl::StrCat("\"", absl::CHexEscape(value), "\"");
  return absl::StrCat("\"", absl::CHexEscape(value.substr(0, kShown)), "\"... (", value.size(),
                      " bytes)");
}

}  // namespace

std::string ProcessCluster::MissingFrom(int ordinal,
                                        const std::map<std::string, std::string>& expected,
                                        absl::Time deadline) const {
  if (expected.empty()) return "";
  // What the member holds of `expected`, read in pages over [first key, last key].
  std::map<std::string, std::string> held;
  KvTestClient client({ClientAddress(ordinal)});
  std::string begin = expected.begin()->first;
  const std::string end = expected.rbegin()->first + std::string(1, '\0');
  for (bool more = true; more;) {
    pb::ClientRequest request;
    pb::RangeRequest& range = *request.mutable_range();
    range.set_key(begin);
    range.set_range_end(end);
    range.set_consistency(pb::READ_CONSISTENCY_SERIALIZABLE);
    absl::StatusOr<pb::ClientResponse> response = client.Call(request, absl::Seconds(5));
    absl::Status status = response.status();
    if (response.ok() && response->has_error()) status = StatusFromError(response->error());
    if (!status.ok()) {
      // A member still verifying its state after a start refuses reads for a while.
      if (absl::Now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      return absl::StrCat(Name(ordinal), ": unreadable from ", Shown(begin), " (",
                          status.ToString(), ")");
    }
    for (const pb::KeyValue& kv : response->range().kvs()) {
      if (expected.contains(kv.key())) held[kv.key()] = kv.value();
    }
    more = response->range().more();
    if (more && response->range().next_key() <= begin) {
      return absl::StrCat(Name(ordinal), ": a page from ", Shown(begin), " continues at ",
                          Shown(response->range().next_key()));
    }
    begin = response->range().next_key();
  }
  std::vector<std::string> missing;
  std::vector<std::string> wrong;
  int missing_count = 0;
  int wrong_count = 0;
  for (const auto& [key, value] : expected) {
    const auto it = held.find(key);
    if (it == held.end()) {
      if (++missing_count <= kKeysNamed) missing.push_back(Shown(key));
    } else if (it->second != value) {
      if (++wrong_count <= kKeysNamed) {
        wrong.push_back(
            absl::StrCat(Shown(key), " = ", Shown(it->second), ", want ", Shown(value)));
      }
    }
  }
  if (missing_count == 0 && wrong_count == 0) return "";
  std::string report = absl::StrCat(Name(ordinal), ": of ", expected.size(), " pairs");
  if (missing_count > 0) {
    absl::StrAppend(&report, ", ", missing_count, " missing (", absl::StrJoin(missing, ", "),
                    missing_count > kKeysNamed ? ", ...)" : ")");
  }
  if (wrong_count > 0) {
    absl::StrAppend(&report, ", ", wrong_count, " wrong (", absl::StrJoin(wrong, "; "),
                    wrong_count > kKeysNamed ? "; ...)" : ")");
  }
  return report;
}

absl::Status ProcessCluster::CheckEveryMemberHas(const std::vector<int>& members,
                                                 const std::map<std::string, std::string>& expected,
                                                 absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  std::string answers;
  bool hashes_equal = false;
  while (!(hashes_equal = HashesEqualNow(members, &answers)) && absl::Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // The reads run even when the hashes differ: which keys a member lacks says why.
  std::vector<std::string> reports;
  for (int member : members) {
    std::string report = MissingFrom(member, expected, deadline);
    if (!report.empty()) reports.push_back(std::move(report));
  }
  if (!hashes_equal) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the members never answered the same content hash at the same applied index within ",
        absl::FormatDuration(timeout), ": ", answers, reports.empty() ? "" : "; and ",
        absl::StrJoin(reports, "; ")));
  }
  if (!reports.empty()) {
    return absl::DataLossError(
        absl::StrCat("members with equal content hashes (", answers,
                     ") lack acknowledged writes: ", absl::StrJoin(reports, "; ")));
  }
  return absl::OkStatus();
}

std::string ProcessCluster::Log(int ordinal) const {
  return ReadFileToString(LogPath(ordinal)).value_or("");
}

}  // namespace stead::testing
