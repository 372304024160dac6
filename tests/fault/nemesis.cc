#include "tests/fault/nemesis.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <thread>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "stead/client.h"

namespace stead::fault {
namespace {

// The text of the file at `path` from byte `from` on; empty if unreadable. Bounded to the
// last 1 MiB, where the member's last words are.
std::string ReadFrom(const std::string& path, uintmax_t from) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const std::streamoff end = in.tellg();
  std::streamoff start = static_cast<std::streamoff>(from);
  if (end < 0 || start > end) return "";
  start = std::max<std::streamoff>(start, end - (1 << 20));
  in.seekg(start);
  std::string text(static_cast<size_t>(end - start), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  return text;
}

constexpr FaultKind kKinds[] = {
    FaultKind::kPartitionLeader,
    FaultKind::kPartitionRandom,
    FaultKind::kBridge,
    FaultKind::kKill,
    FaultKind::kStop,
    FaultKind::kDelay,
    FaultKind::kLoss,
    FaultKind::kTransfer,
    FaultKind::kMembership,
    FaultKind::kDiskFull,
};

// Longer than the members' longest election timeout (20 ticks of 50 ms), so that a
// stopped leader is replaced while it sleeps.
constexpr absl::Duration kMinStopHold = absl::Seconds(2);

}  // namespace

std::string FaultKindName(FaultKind kind) {
  switch (kind) {
    case FaultKind::kPartitionLeader:
      return "partition-leader";
    case FaultKind::kPartitionRandom:
      return "partition-random";
    case FaultKind::kBridge:
      return "bridge";
    case FaultKind::kKill:
      return "kill";
    case FaultKind::kStop:
      return "stop";
    case FaultKind::kDelay:
      return "delay";
    case FaultKind::kLoss:
      return "loss";
    case FaultKind::kTransfer:
      return "transfer";
    case FaultKind::kMembership:
      return "membership";
    case FaultKind::kDiskFull:
      return "disk-full";
  }
  return "unknown";
}

std::vector<FaultKind> AllFaultKinds() { return {std::begin(kKinds), std::end(kKinds)}; }

absl::StatusOr<std::vector<FaultKind>> ParseFaultKinds(const std::string& text) {
  if (text == "all") return AllFaultKinds();
  std::vector<FaultKind> kinds;
  for (absl::string_view name : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    const FaultKind* found =
        std::find_if(std::begin(kKinds), std::end(kKinds),
                     [&](FaultKind kind) { return FaultKindName(kind) == name; });
    if (found == std::end(kKinds)) {
      std::vector<std::string> names;
      for (FaultKind kind : kKinds) names.push_back(FaultKindName(kind));
      return absl::InvalidArgumentError(absl::StrCat("unknown fault kind '", name, "' (one of ",
                                                     absl::StrJoin(names, ","), ", or all)"));
    }
    if (std::find(kinds.begin(), kinds.end(), *found) == kinds.end()) kinds.push_back(*found);
  }
  if (kinds.empty()) return absl::InvalidArgumentError("no fault kinds given");
  return kinds;
}

absl::StatusOr<std::vector<FaultKind>> FaultKindsFor(const std::string& text,
                                                     const FaultClusterOptions& options) {
  absl::StatusOr<std::vector<FaultKind>> kinds = ParseFaultKinds(text);
  if (!kinds.ok() || !TmpfsVolumes(options).empty()) return kinds;
  if (text == "all") {
    kinds->erase(std::remove(kinds->begin(), kinds->end(), FaultKind::kDiskFull), kinds->end());
    return kinds;
  }
  if (std::find(kinds->begin(), kinds->end(), FaultKind::kDiskFull) != kinds->end()) {
    return absl::InvalidArgumentError(
        "the disk-full fault fills a member's WAL or data tmpfs: give the volumes one "
        "(--wal-tmpfs-mb=N, --data-tmpfs-mb=N)");
  }
  return kinds;
}

absl::StatusOr<std::string> PickMemberToReplace(const std::vector<MemberView>& members,
                                                const std::vector<std::string>& preference) {
  int voters = 0;
  for (const MemberView& member : members) {
    if (member.learner) {
      return absl::FailedPreconditionError(
          absl::StrCat(member.name, " is a learner still: one member replaced at a time"));
    }
    ++voters;
  }
  if (voters < 3) {
    return absl::FailedPreconditionError(
        absl::StrCat(voters, " voters: removing one needs at least 3"));
  }
  for (const std::string& name : preference) {
    for (const MemberView& member : members) {
      if (member.name == name && !member.leader) return name;
    }
  }
  return absl::FailedPreconditionError("no follower to replace");
}

absl::StatusOr<Volume> PickVolumeToFill(const FaultClusterOptions& options, uint64_t draw) {
  const std::vector<Volume> volumes = TmpfsVolumes(options);
  if (volumes.empty()) return absl::FailedPreconditionError("no volume is a tmpfs");
  return volumes[draw % volumes.size()];
}

std::string StopReason(absl::string_view log) {
  // The member's verdict, its fatal status, when it got that far; otherwise the first
  // error that stopped its Raft node (the apply batches still queued fail after it,
  // for other reasons).
  constexpr absl::string_view kVerdict = "this member cannot continue: ";
  constexpr absl::string_view kFirst = "stopping this member: ";
  size_t at = log.rfind(kVerdict);
  size_t length = kVerdict.size();
  if (at == absl::string_view::npos) {
    at = log.find(kFirst);
    length = kFirst.size();
  }
  if (at == absl::string_view::npos) return "";
  absl::string_view rest = log.substr(at + length);
  const absl::string_view code = rest.substr(0, rest.find(':'));
  // absl's names ("RESOURCE_EXHAUSTED") as the code's C++ name ("ResourceExhausted").
  for (int c = 1; c <= 16; ++c) {
    if (absl::StatusCodeToString(static_cast<absl::StatusCode>(c)) != code) continue;
    std::string name;
    bool upper = true;
    for (char ch : code) {
      if (ch == '_') {
        upper = true;
        continue;
      }
      name.push_back(upper ? ch : absl::ascii_tolower(ch));
      upper = false;
    }
    return name;
  }
  return "";
}

std::string DiskFullHealNote(Volume volume, const std::optional<testing::ExitStatus>& exited,
                             absl::string_view reason, bool ready) {
  std::string note = absl::StrCat(VolumeName(volume), " volume: the member ");
  if (!exited.has_value()) {
    absl::StrAppend(&note, "kept running (", ready ? "ready" : "not ready", ")");
  } else if (exited->signaled()) {
    absl::StrAppend(&note, "died (", exited->ToString(), "), restarted");
  } else {
    absl::StrAppend(&note, "stopped (", reason.empty() ? exited->ToString() : reason,
                    "), restarted");
  }
  return note;
}

Nemesis::Nemesis(FaultCluster* cluster, NemesisOptions options)
    : cluster_(cluster), options_(std::move(options)), rng_(options_.seed) {}

Nemesis::~Nemesis() { StopAndHeal(); }

void Nemesis::Start() {
  if (!thread_.joinable()) thread_ = std::thread([this] { Run(); });
}

void Nemesis::StopAndHeal() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  stopped_cv_.SignalAll();
  if (thread_.joinable()) thread_.join();
}

int64_t Nemesis::NowNs() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() -
                                                              options_.start)
      .count();
}

bool Nemesis::Sleep(absl::Duration duration) {
  const absl::Time deadline = absl::Now() + duration;
  MutexLock lock(&mu_);
  for (int wakeups = 0; !stop_ && wakeups < 10000; ++wakeups) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return true;
    stopped_cv_.WaitWithTimeout(&mu_, left);
  }
  return !stop_ && absl::Now() >= deadline;
}

absl::Duration Nemesis::Between(absl::Duration low, absl::Duration high) {
  const int64_t low_ms = absl::ToInt64Milliseconds(low);
  const int64_t high_ms = std::max(low_ms, absl::ToInt64Milliseconds(high));
  return absl::Milliseconds(std::uniform_int_distribution<int64_t>(low_ms, high_ms)(rng_));
}

void Nemesis::Record(const FaultEvent& event, bool healing) {
  MutexLock lock(&mu_);
  if (!options_.log_path.empty()) {
    std::ofstream log(options_.log_path, std::ios::app);
    log << absl::StrFormat("%.3f",
                           static_cast<double>(healing ? event.heal_ns : event.inject_ns) / 1e9)
        << "s " << (healing ? "heal " : "inject ") << FaultKindName(event.kind) << " "
        << event.target << (healing && !event.note.empty() ? " (" + event.note + ")" : "")
        << (event.error.empty() ? " ok" : " FAILED: " + event.error) << "\n";
  }
  // One entry per episode: the heal replaces the injection's entry.
  if (!log_.empty() && log_.back().inject_ns == event.inject_ns && log_.back().kind == event.kind) {
    log_.back() = event;
  } else {
    log_.push_back(event);
  }
}

void Nemesis::Run() {
  if (!Sleep(options_.initial_quiet)) return;
  if (options_.kinds.empty()) return;
  std::uniform_int_distribution<size_t> pick_kind(0, options_.kinds.size() - 1);
  for (int episode = 0; episode < 100000; ++episode) {
    Episode(options_.kinds[pick_kind(rng_)]);
    if (!Sleep(Between(options_.settle_min, options_.settle_max))) return;
  }
}

void Nemesis::Episode(FaultKind kind) {
  const int members = cluster_->size();
  // Drawn for every kind, so that the schedule does not depend on which kinds ran.
  int target = std::uniform_int_distribution<int>(0, members - 1)(rng_);
  absl::Duration hold = Between(options_.hold_min, options_.hold_max);
  const int delay_ms = std::uniform_int_distribution<int>(50, 300)(rng_);
  const int loss_percent = std::uniform_int_distribution<int>(10, 50)(rng_);
  std::vector<int> order(members);
  for (int i = 0; i < members; ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), rng_);
  const uint64_t volume_draw = std::uniform_int_distribution<uint64_t>(0, 1)(rng_);

  FaultEvent event;
  event.inject_ns = NowNs();
  event.kind = kind;
  absl::Status injected;
  std::function<absl::Status()> heal = [] { return absl::OkStatus(); };
  switch (kind) {
    case FaultKind::kPartitionLeader:
    case FaultKind::kPartitionRandom: {
      if (kind == FaultKind::kPartitionLeader) {
        const int leader = cluster_->Leader();
        if (leader >= 0) target = leader;
      }
      event.target = cluster_->PodName(target);
      injected = cluster_->Partition(target);
      heal = [this, target] { return cluster_->Heal(target); };
      break;
    }
    case FaultKind::kBridge: {
      // order[0] is the bridge; the others alternate between two sides that are cut
      // off from each other but both still see the bridge.
      std::vector<int> left, right;
      for (int i = 1; i < members; ++i) (i % 2 ? left : right).push_back(order[i]);
      auto names = [&](const std::vector<int>& side) {
        std::vector<std::string> pods;
        for (int m : side) pods.push_back(cluster_->PodName(m));
        return absl::StrJoin(pods, ",");
      };
      event.target =
          absl::StrCat(names(left), "|", names(right), " via ", cluster_->PodName(order[0]));
      if (right.empty()) {
        injected = absl::FailedPreconditionError("a bridge needs 3 members");
        break;
      }
      for (int a : left) {
        std::vector<std::string> from;
        for (int b : right) from.push_back(absl::StrCat(b));
        if (injected = cluster_->Partition(a, from); !injected.ok()) break;
      }
      heal = [this] { return cluster_->HealAll(); };
      break;
    }
    case FaultKind::kKill:
      event.target = cluster_->PodName(target);
      injected = cluster_->Kill(target);
      heal = [this, target] { return cluster_->Start(target); };
      break;
    case FaultKind::kStop:
      event.target = cluster_->PodName(target);
      hold = std::max(hold, kMinStopHold);
      injected = cluster_->Stop(target);
      heal = [this, target] { return cluster_->Continue(target); };
      break;
    case FaultKind::kDelay:
      event.target = absl::StrCat(cluster_->PodName(target), " delay ", delay_ms, "ms");
      injected = cluster_->Delay(target, delay_ms, delay_ms / 4);
      heal = [this, target] { return cluster_->Heal(target); };
      break;
    case FaultKind::kLoss:
      event.target = absl::StrCat(cluster_->PodName(target), " loss ", loss_percent, "%");
      injected = cluster_->Loss(target, loss_percent);
      heal = [this, target] { return cluster_->Heal(target); };
      break;
    case FaultKind::kTransfer: {
      const int leader = cluster_->Leader();
      int to = order[0] == leader ? order[members > 1 ? 1 : 0] : order[0];
      event.target = absl::StrCat(leader >= 0 ? cluster_->PodName(leader) : "?", " -> ",
                                  cluster_->PodName(to));
      ClientOptions client_options{.endpoints = cluster_->ClientEndpoints(),
                                   .route_to_leader = false};
      absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(client_options);
      injected = client.ok()
                     ? (*client)
                           ->LeaderTransfer(cluster_->PodName(to), {.timeout = absl::Seconds(5)})
                           .status()
                     : client.status();
      hold = absl::ZeroDuration();  // nothing to heal
      break;
    }
    case FaultKind::kMembership: {
      int picked = -1;
      injected = RemoveAndWipe(order, &picked);
      event.target = picked >= 0 ? cluster_->PodName(picked) : "(none)";
      target = picked;
      // The heal is the member a voter again; it may take as long as the episode's hold
      // and settle bounds together.
      const absl::Duration bound = options_.hold_max + options_.settle_max;
      heal = [this, target, bound, &event] {
        if (absl::Status started = cluster_->Start(target); !started.ok()) return started;
        return WaitVoter(target, bound, &event.note);
      };
      break;
    }
    case FaultKind::kDiskFull: {
      absl::StatusOr<Volume> picked = PickVolumeToFill(cluster_->options(), volume_draw);
      if (!picked.ok()) {
        event.target = cluster_->PodName(target);
        injected = picked.status();
        break;
      }
      const Volume volume = *picked;
      event.target = absl::StrCat(cluster_->PodName(target), " ", VolumeName(volume));
      // What the member logs from here on says why it stopped, if it does.
      std::error_code error;
      const uintmax_t log_from = std::filesystem::file_size(cluster_->LogPath(target), error);
      absl::StatusOr<int64_t> filled = cluster_->FillVolume(target, volume);
      injected = filled.status();
      if (filled.ok()) absl::StrAppend(&event.target, " full, ballast ", *filled >> 20, " MiB");
      heal = [this, target, volume, from = error ? 0 : log_from, &event] {
        // Whether it still served before the room comes back.
        const bool ready = cluster_->HttpStatus(target, "/readyz") == 200;
        if (absl::Status removed = cluster_->RemoveBallast(target, volume); !removed.ok()) {
          return removed;
        }
        std::string reason = StopReason(ReadFrom(cluster_->LogPath(target), from));
        // A member that has begun to stop gets its shutdown time to exit.
        for (int round = 0; round < 80 && !reason.empty() && !cluster_->Exited(target); ++round) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        const std::optional<testing::ExitStatus> exited = cluster_->Exited(target);
        event.note = DiskFullHealNote(volume, exited, reason, ready);
        if (!exited.has_value()) return absl::OkStatus();
        // A member stopped by a full volume recovers from its WAL once started again with
        // room (docs/resize-volumes.md).
        return cluster_->Start(target);
      };
      if (!injected.ok()) cluster_->RemoveBallast(target, volume).IgnoreError();
      break;
    }
  }
  event.injected = injected.ok();
  if (!injected.ok()) {
    event.error = std::string(injected.message());
    // A partial injection (one partition of a bridge) is healed all the same.
    if (kind == FaultKind::kBridge) cluster_->HealAll().IgnoreError();
    Record(event, /*healing=*/false);
    return;
  }
  Record(event, /*healing=*/false);
  Sleep(hold);  // cut short by StopAndHeal; the heal below runs either way
  const absl::Status healed = heal();
  event.heal_ns = NowNs();
  event.healed = healed.ok();
  if (!healed.ok()) event.error = std::string(healed.message());
  Record(event, /*healing=*/true);
}

namespace {

absl::StatusOr<std::unique_ptr<Client>> AdminClient(const FaultCluster& cluster) {
  // Members forward to the leader: its advertised name resolves only in the namespaces.
  return Client::Create({.endpoints = cluster.ClientEndpoints(), .route_to_leader = false});
}

std::vector<MemberView> Views(const std::vector<Member>& members) {
  std::vector<MemberView> views;
  for (const Member& member : members) {
    views.push_back({.name = member.name, .learner = member.is_learner, .leader = member.is_leader});
  }
  return views;
}

}  // namespace

absl::Status Nemesis::RemoveAndWipe(const std::vector<int>& order, int* target) {
  absl::StatusOr<std::unique_ptr<Client>> client = AdminClient(*cluster_);
  if (!client.ok()) return client.status();
  absl::StatusOr<std::vector<Member>> members =
      (*client)->MemberList({.timeout = absl::Seconds(3)});
  if (!members.ok()) return members.status();
  std::vector<std::string> preference;
  for (int member : order) preference.push_back(cluster_->PodName(member));
  absl::StatusOr<std::string> name = PickMemberToReplace(Views(*members), preference);
  if (!name.ok()) return name.status();
  for (int member : order) {
    if (cluster_->PodName(member) == *name) *target = member;
  }
  // Removed first, as for a lost volume: the leader then adds the empty member at once
  // instead of waiting for the old one to fall silent.
  absl::StatusOr<std::vector<Member>> removed =
      (*client)->MemberRemoveByName(*name, {.timeout = absl::Seconds(5)});
  if (!removed.ok()) {
    // The answer may be lost after the removal committed: the list decides.
    members = (*client)->MemberList({.timeout = absl::Seconds(3)});
    if (!members.ok()) return removed.status();
    for (const Member& member : *members) {
      if (member.name == *name) return removed.status();
    }
  }
  if (absl::Status status = cluster_->Kill(*target); !status.ok()) return status;
  return cluster_->Wipe(*target);
}

absl::Status Nemesis::WaitVoter(int target, absl::Duration timeout, std::string* note) {
  const std::string name = cluster_->PodName(target);
  absl::StatusOr<std::unique_ptr<Client>> client = AdminClient(*cluster_);
  if (!client.ok()) return client.status();
  const absl::Time start = absl::Now();
  std::string seen = "not listed";
  for (int round = 0; round < 10000 && absl::Now() - start < timeout; ++round) {
    absl::StatusOr<std::vector<Member>> members =
        (*client)->MemberList({.timeout = absl::Seconds(1)});
    if (members.ok()) {
      seen = "not listed";
      for (const Member& member : *members) {
        if (member.name != name) continue;
        if (!member.is_learner) {
          *note = absl::StrCat("a voter again after ",
                               absl::ToInt64Milliseconds(absl::Now() - start), " ms");
          return absl::OkStatus();
        }
        seen = "a learner";
      }
    } else {
      seen = absl::StrCat("unknown (", members.status().message(), ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      name, " not a voter again within ", absl::FormatDuration(timeout), ": ", seen));
}

std::vector<FaultEvent> Nemesis::Log() const {
  MutexLock lock(&mu_);
  return log_;
}

std::map<std::string, int> Nemesis::CountsByKind() const {
  std::map<std::string, int> counts;
  for (const FaultEvent& event : Log()) {
    if (event.injected) ++counts[FaultKindName(event.kind)];
  }
  return counts;
}

std::string Nemesis::Summary() const {
  const std::map<std::string, int> counts = CountsByKind();
  std::vector<std::string> parts;
  for (FaultKind kind : kKinds) {
    auto it = counts.find(FaultKindName(kind));
    if (it != counts.end()) parts.push_back(absl::StrCat(it->first, ":", it->second));
  }
  return parts.empty() ? "none" : absl::StrJoin(parts, ",");
}

}  // namespace stead::fault
