#include "tests/fault/fault_cluster.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <chrono>
#include <filesystem>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tests/testing/kv_test_client.h"

namespace stead::fault {
namespace {

using testing::CompletedRun;
using testing::Subprocess;
using testing::SubprocessOptions;

constexpr char kBallast[] = "ballast";

absl::Status ErrnoError(absl::string_view what, const std::string& path, int error) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", std::strerror(error)));
}

// Removes every entry of `dir` but keeps `dir` itself (it may be a mount point).
absl::Status EmptyDir(const std::string& dir) {
  std::error_code error;
  std::filesystem::directory_iterator it(dir, error);
  for (; !error && it != std::filesystem::directory_iterator(); it.increment(error)) {
    std::error_code remove_error;
    std::filesystem::remove_all(it->path(), remove_error);
    if (remove_error) {
      return absl::InternalError(
          absl::StrCat("cannot remove ", it->path().string(), ": ", remove_error.message()));
    }
  }
  if (error && error != std::errc::no_such_file_or_directory) {
    return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", error.message()));
  }
  return absl::OkStatus();
}

// Mounts a tmpfs of `mb` MiB on `dir`, which must be missing or empty: a tmpfs over an
// earlier run's volume would hide it from a member that still expects it.
absl::Status MountTmpfs(const std::string& dir, int mb) {
  std::error_code error;
  std::filesystem::create_directories(dir, error);
  if (error || !std::filesystem::is_empty(dir, error) || error) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " is not an empty directory: use a fresh run folder"));
  }
  const std::string data = absl::StrCat("size=", mb, "m,mode=0755");
  if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, data.c_str()) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("mount -t tmpfs on ", dir, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

int TmpfsMb(const FaultClusterOptions& options, Volume volume) {
  return volume == Volume::kWal ? options.wal_tmpfs_mb : options.data_tmpfs_mb;
}

}  // namespace

std::string VolumeName(Volume volume) { return volume == Volume::kWal ? "wal" : "data"; }

std::vector<Volume> TmpfsVolumes(const FaultClusterOptions& options) {
  std::vector<Volume> volumes;
  if (options.wal_tmpfs_mb > 0) volumes.push_back(Volume::kWal);
  if (options.data_tmpfs_mb > 0) volumes.push_back(Volume::kData);
  return volumes;
}

absl::StatusOr<std::unique_ptr<FaultCluster>> FaultCluster::Up(FaultClusterOptions options) {
  if (options.stead_binary.empty() || options.netns_script.empty() || options.run_dir.empty()) {
    return absl::InvalidArgumentError("stead binary, netns script and run folder are required");
  }
  if (options.wal_tmpfs_mb != 0 && options.wal_tmpfs_mb < kMinWalTmpfsMb) {
    return absl::InvalidArgumentError(absl::StrCat("a WAL tmpfs of ", options.wal_tmpfs_mb,
                                                   " MiB is too small: at least ",
                                                   kMinWalTmpfsMb, " MiB"));
  }
  if (options.data_tmpfs_mb != 0 && options.data_tmpfs_mb < kMinDataTmpfsMb) {
    return absl::InvalidArgumentError(absl::StrCat("a data tmpfs of ", options.data_tmpfs_mb,
                                                   " MiB is too small: at least ",
                                                   kMinDataTmpfsMb, " MiB"));
  }
  if (options.members < 1 || options.members > 9) {
    return absl::InvalidArgumentError(absl::StrCat("members ", options.members, " not in 1..9"));
  }
  if (::geteuid() != 0) return absl::FailedPreconditionError("network namespaces need root");
  std::error_code error;
  // The script's stderr files go to scratch/, away from the volumes and logs.
  std::filesystem::create_directories(options.run_dir + "/scratch", error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("cannot create ", options.run_dir, ": ", error.message()));
  }
  std::unique_ptr<FaultCluster> cluster(new FaultCluster(std::move(options)));
  const FaultClusterOptions& o = cluster->options_;
  absl::string_view subnet = o.subnet;
  if (!absl::ConsumeSuffix(&subnet, ".0/24")) {
    return absl::InvalidArgumentError(absl::StrCat("subnet ", o.subnet, " is not a.b.c.0/24"));
  }
  cluster->net_ = std::string(subnet);
  absl::StatusOr<std::string> up =
      cluster->Script({"up", absl::StrCat(o.members), o.subnet}, absl::Seconds(60));
  if (!up.ok()) return absl::FailedPreconditionError(up.status().message());
  cluster->up_ = true;
  for (int i = 0; i < o.members; ++i) {
    for (Volume volume : TmpfsVolumes(o)) {
      const std::string dir = cluster->VolumeDir(i, volume);
      if (absl::Status mounted = MountTmpfs(dir, TmpfsMb(o, volume)); !mounted.ok()) {
        return mounted;
      }
      cluster->mounted_.push_back(dir);
    }
  }
  return cluster;
}

FaultCluster::FaultCluster(FaultClusterOptions options) : options_(std::move(options)) {
  processes_.resize(options_.members);
}

FaultCluster::~FaultCluster() {
  {
    MutexLock lock(&mu_);
    for (std::unique_ptr<Subprocess>& process : processes_) {
      if (process != nullptr) process->Kill();
      process.reset();
    }
  }
  // The members are gone, so nothing holds the tmpfs busy; a lazy unmount all the same
  // if something does (it goes once released).
  for (const std::string& dir : mounted_) {
    if (::umount2(dir.c_str(), 0) != 0) ::umount2(dir.c_str(), MNT_DETACH);
  }
  if (up_) Script({"down"}, absl::Seconds(60)).IgnoreError();  // best effort on every path
}

std::string FaultCluster::PodName(int member) const {
  return absl::StrCat(options_.sts, "-", member);
}

std::string FaultCluster::Ip(int member) const { return absl::StrCat(net_, ".", 10 + member); }

std::string FaultCluster::LogPath(int member) const {
  return absl::StrCat(options_.run_dir, "/", PodName(member), ".log");
}

std::string FaultCluster::DataDir(int member) const {
  return absl::StrCat(options_.run_dir, "/", PodName(member), "/data");
}

std::string FaultCluster::WalDir(int member) const {
  return absl::StrCat(options_.run_dir, "/", PodName(member), "/wal");
}

std::string FaultCluster::VolumeDir(int member, Volume volume) const {
  return volume == Volume::kWal ? WalDir(member) : DataDir(member);
}

std::vector<std::string> FaultCluster::ClientEndpoints() const {
  std::vector<std::string> endpoints;
  for (int i = 0; i < options_.members; ++i)
    endpoints.push_back(absl::StrCat(Ip(i), ":", kClientPort));
  return endpoints;
}

std::vector<std::string> FaultCluster::ScriptEnv() const {
  std::vector<std::string> env = {"CLUSTER_PREFIX=" + options_.prefix,
                                  "CLUSTER_STS=" + options_.sts,
                                  "CLUSTER_SVC=" + options_.service, "CLUSTER_NAMESPACE=default",
                                  "CLUSTER_DOMAIN=cluster.local"};
  env.insert(env.end(), options_.env.begin(), options_.env.end());
  return env;
}

absl::StatusOr<std::string> FaultCluster::Script(const std::vector<std::string>& args,
                                                 absl::Duration timeout) const {
  MutexLock lock(&script_mu_);
  SubprocessOptions run{.argv = {"/bin/bash", options_.netns_script}, .env = ScriptEnv()};
  run.argv.insert(run.argv.end(), args.begin(), args.end());
  CompletedRun done =
      testing::RunToCompletion(std::move(run), options_.run_dir + "/scratch", timeout);
  if (done.exit_code != 0) {
    return absl::InternalError(absl::StrCat("netns_cluster.sh ", absl::StrJoin(args, " "),
                                            " (exit ", done.exit_code,
                                            "): ", absl::StripAsciiWhitespace(done.err)));
  }
  return done.out;
}

std::vector<std::string> FaultCluster::MemberArgv(int member) const {
  std::vector<std::string> argv = {
      "/bin/bash",
      options_.netns_script,
      "exec",
      absl::StrCat(member),
      options_.stead_binary,
      "--name=" + PodName(member),
      "--data-dir=" + DataDir(member),
      "--wal-dir=" + WalDir(member),
      absl::StrCat("--client-addr=0.0.0.0:", kClientPort),
      absl::StrCat("--peer-addr=0.0.0.0:", kPeerPort),
      absl::StrCat("--http-addr=0.0.0.0:", kHttpPort),
      // Peers by their headless-Service names, as the StatefulSet runs them.
      "--peer-service=" + options_.service,
      absl::StrCat("--advertise-host=", PodName(member), ".", options_.service,
                   ".default.svc.cluster.local"),
      absl::StrCat("--initial-cluster-size=", options_.members),
      absl::StrCat("--tick-interval=", absl::ToInt64Milliseconds(options_.tick), "ms"),
      "--shutdown-timeout=5s",
      "--io-threads=1",
  };
  argv.insert(argv.end(), options_.extra_flags.begin(), options_.extra_flags.end());
  return argv;
}

absl::Status FaultCluster::Start(int member) {
  MutexLock lock(&mu_);
  std::unique_ptr<Subprocess>& process = processes_.at(member);
  if (process != nullptr && process->running()) {
    return absl::InternalError(absl::StrCat(PodName(member), " runs already"));
  }
  process.reset();
  // `exec` replaces the script with stead, so the child PID is the member's.
  absl::StatusOr<std::unique_ptr<Subprocess>> started =
      Subprocess::Start(MemberArgv(member), ScriptEnv(), LogPath(member));
  if (!started.ok()) return started.status();
  process = std::move(started).value();
  return absl::OkStatus();
}

absl::Status FaultCluster::StartAll() {
  for (int i = 0; i < options_.members; ++i) {
    if (absl::Status status = Start(i); !status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status FaultCluster::Kill(int member) {
  MutexLock lock(&mu_);
  std::unique_ptr<Subprocess>& process = processes_.at(member);
  if (process != nullptr) process->Kill();
  process.reset();
  return absl::OkStatus();
}

absl::Status FaultCluster::Restart(int member) {
  if (absl::Status status = Kill(member); !status.ok()) return status;
  return Start(member);
}

absl::Status FaultCluster::Stop(int member) {
  MutexLock lock(&mu_);
  std::unique_ptr<Subprocess>& process = processes_.at(member);
  if (process == nullptr) return absl::FailedPreconditionError(PodName(member) + " not running");
  return process->Signal(SIGSTOP);
}

absl::Status FaultCluster::Continue(int member) {
  MutexLock lock(&mu_);
  std::unique_ptr<Subprocess>& process = processes_.at(member);
  if (process == nullptr) return absl::FailedPreconditionError(PodName(member) + " not running");
  return process->Signal(SIGCONT);
}

bool FaultCluster::Running(int member) {
  MutexLock lock(&mu_);
  std::unique_ptr<Subprocess>& process = processes_.at(member);
  return process != nullptr && process->running();
}

absl::Status FaultCluster::Wipe(int member) {
  MutexLock lock(&mu_);
  std::unique_ptr<Subprocess>& process = processes_.at(member);
  if (process != nullptr && process->running()) {
    return absl::FailedPreconditionError(PodName(member) + " runs: kill it before the wipe");
  }
  if (absl::Status status = EmptyDir(DataDir(member)); !status.ok()) return status;
  return EmptyDir(WalDir(member));
}

absl::StatusOr<int64_t> FaultCluster::FillVolume(int member, Volume volume) {
  const int mb = TmpfsMb(options_, volume);
  if (mb <= 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the ", VolumeName(volume), " volumes are not on a tmpfs"));
  }
  const std::string path = absl::StrCat(VolumeDir(member, volume), "/", kBallast);
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("open", path, errno);
  const std::string chunk(1 << 20, 'b');
  int64_t written = 0;
  int error = 0;
  // Bounded: the tmpfs holds at most `mb` chunks.
  for (int64_t round = 0; round <= int64_t{mb} * 4 + 16; ++round) {
    const ssize_t n = ::write(fd, chunk.data(), chunk.size());
    if (n > 0) {
      written += n;
      continue;
    }
    error = n < 0 ? errno : ENOSPC;
    if (error == EINTR) continue;
    break;
  }
  ::close(fd);
  if (error != ENOSPC) {
    return error == 0 ? absl::InternalError(absl::StrCat(path, " never filled the tmpfs"))
                      : ErrnoError("write", path, error);
  }
  return written;
}

absl::Status FaultCluster::RemoveBallast(int member, Volume volume) {
  if (TmpfsMb(options_, volume) <= 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the ", VolumeName(volume), " volumes are not on a tmpfs"));
  }
  const std::string path = absl::StrCat(VolumeDir(member, volume), "/", kBallast);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoError("unlink", path, errno);
  return absl::OkStatus();
}

std::optional<testing::ExitStatus> FaultCluster::Exited(int member) {
  MutexLock lock(&mu_);
  std::unique_ptr<Subprocess>& process = processes_.at(member);
  if (process == nullptr) return std::nullopt;
  return process->WaitFor(absl::ZeroDuration());
}

absl::Status FaultCluster::Partition(int member, const std::vector<std::string>& from) {
  std::vector<std::string> args = {"partition", absl::StrCat(member)};
  args.insert(args.end(), from.begin(), from.end());
  return Script(args).status();
}

absl::Status FaultCluster::Heal(int member) {
  return Script({"heal", absl::StrCat(member)}).status();
}

absl::Status FaultCluster::HealAll() { return Script({"heal", "all"}).status(); }

absl::Status FaultCluster::Delay(int member, int ms, int jitter_ms) {
  return Script({"delay", absl::StrCat(member), absl::StrCat(ms), absl::StrCat(jitter_ms)})
      .status();
}

absl::Status FaultCluster::Loss(int member, int percent) {
  return Script({"loss", absl::StrCat(member), absl::StrCat(percent)}).status();
}

int FaultCluster::HttpStatus(int member, const std::string& path, absl::Duration timeout) const {
  absl::StatusOr<testing::HttpResponse> response =
      testing::HttpGet(Ip(member), kHttpPort, path, timeout);
  return response.ok() ? response->status_code : 0;
}

int FaultCluster::Leader() const {
  for (int i = 0; i < options_.members; ++i) {
    absl::StatusOr<testing::HttpResponse> response =
        testing::HttpGet(Ip(i), kHttpPort, "/metrics", absl::Milliseconds(500));
    if (!response.ok() || response->status_code != 200) continue;
    for (absl::string_view line : absl::StrSplit(response->body, '\n')) {
      double value = 0;
      if (absl::ConsumePrefix(&line, "stead_raft_is_leader ") && absl::SimpleAtod(line, &value) &&
          value == 1.0) {
        return i;
      }
    }
  }
  return -1;
}

int FaultCluster::WaitForLeader(absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  for (int round = 0; round < 100000; ++round) {
    if (int leader = Leader(); leader >= 0) return leader;
    if (absl::Now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -1;
}

bool FaultCluster::WaitReady(absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  for (int round = 0; round < 100000; ++round) {
    bool ready = true;
    for (int i = 0; i < options_.members && ready; ++i) ready = HttpStatus(i, "/readyz") == 200;
    if (ready) return true;
    if (absl::Now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

}  // namespace stead::fault
