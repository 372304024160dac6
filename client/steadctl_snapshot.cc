#include "client/steadctl_snapshot.h"

#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/asio.h"
#include "base/mutex.h"
#include "base/status_macros.h"
#include "client/connection.h"
#include "wire/tls_context.h"
#include "client/steadctl_io.h"
#include "proto/kv.pb.h"
#include "server/frame.h"
#include "storage/backup_file.h"
#include "storage/checkpoint_files.h"
#include "storage/restore.h"

namespace stead::ctl {

const char kSnapshotHelp[] =
    "usage: steadctl snapshot save FILE [--endpoint=H:P] [--force]\n"
    "       steadctl snapshot verify FILE\n"
    "       steadctl snapshot inspect FILE\n"
    "       steadctl snapshot restore FILE --data-dir=D --wal-dir=W --name=N\n"
    "                                 --peer-addr=H:P --client-addr=H:P\n"
    "Backup files of a member's state: see steadctl snapshot SUBCOMMAND --help.\n"
    "Exit 7 when a file is corrupt, truncated or not a stead backup.\n";

const char kSnapshotSaveHelp[] =
    "usage: steadctl snapshot save FILE [--endpoint=H:P] [--force]\n"
    "Saves a consistent copy of the state of one member, at its applied Raft index, as\n"
    "the backup file FILE: the member given by --endpoint, else the leader. The member\n"
    "takes a checkpoint and streams it; every file's checksum is checked as it arrives,\n"
    "and FILE appears only once complete and synced (written as FILE.tmp, then renamed),\n"
    "so an interrupted save leaves no FILE. An existing FILE is refused (exit 2) unless\n"
    "--force, which replaces it only when the new backup is complete. Progress (percent,\n"
    "MB/s) goes to stderr when it is a terminal; the last line gives the bytes, seconds,\n"
    "MB/s and Raft index (json: one object). One save at a time per member (exit 1 while\n"
    "another runs). SIGINT/SIGTERM cancels it (exit 1).\n";

const char kSnapshotVerifyHelp[] =
    "usage: steadctl snapshot verify FILE\n"
    "Reads the whole backup file and checks its header, the checksum of every file in\n"
    "it, its size and its trailer. Prints what it holds (as inspect) with 'ok'; exit 7\n"
    "naming what is wrong when it is corrupt, truncated or not a stead backup.\n";

const char kSnapshotInspectHelp[] =
    "usage: steadctl snapshot inspect FILE\n"
    "Prints what a backup file holds, from its header: cluster id, Raft index and term,\n"
    "the voters and learners (member ids), key count, size, file count, creation time\n"
    "and member. Checks the header and the file's size (a truncated file: exit 7), not\n"
    "the data: use verify for that.\n";

const char kSnapshotRestoreHelp[] =
    "usage: steadctl snapshot restore FILE --data-dir=D --wal-dir=W --name=N\n"
    "                                 --peer-addr=H:P --client-addr=H:P\n"
    "Makes D and W (empty or absent) the volumes of the first member of a NEW cluster\n"
    "holding the backup's data: a new cluster id (it can never join the old cluster), a\n"
    "new member id, the member N alone as voter, its Raft log starting after the\n"
    "backup's index. --peer-addr and --client-addr are the addresses other members and\n"
    "clients will reach it at (recorded in its membership). Then start it:\n"
    "  stead --name=N --data-dir=D --wal-dir=W ...\n"
    "and start the other members with empty volumes: they join it and receive the data.\n"
    "The file is verified in full before anything is written: a corrupt or truncated\n"
    "file (exit 7) or volumes in use (exit 6) change nothing. Progress and MB/s on\n"
    "stderr. (A member started with --restore-from=FILE does the same by itself.)\n";

namespace {

namespace asio = boost::asio;

// How long a save waits without a byte before it gives up.
constexpr absl::Duration kSaveStallTimeout = absl::Seconds(60);


double MegabytesPerSecond(uint64_t bytes, double seconds) {
  return seconds > 0 ? static_cast<double>(bytes) / 1e6 / seconds : 0.0;
}

// A one-line progress bar on stderr, redrawn at most 5 times a second, only when stderr
// is a terminal (scripts and logs get the final line alone).
class Progress {
 public:
  explicit Progress(std::string what) : what_(std::move(what)), enabled_(::isatty(STDERR_FILENO) == 1) {}
  ~Progress() { Done(); }

  void Update(uint64_t done, uint64_t total) {
    if (!enabled_) return;
    const absl::Time now = absl::Now();
    if (now - last_draw_ < absl::Milliseconds(200) && done != total) return;
    last_draw_ = now;
    const double seconds = absl::ToDoubleSeconds(now - started_);
    const double percent = total == 0 ? 0.0 : 100.0 * static_cast<double>(done) / static_cast<double>(total);
    std::fprintf(stderr, "\r%s %5.1f%%  %8.1f / %.1f MB  %7.1f MB/s ", what_.c_str(), percent,
                 static_cast<double>(done) / 1e6, static_cast<double>(total) / 1e6,
                 MegabytesPerSecond(done, seconds));
    drawn_ = true;
  }
  void Done() {
    if (drawn_) std::fprintf(stderr, "\n");
    drawn_ = false;
  }

 private:
  const std::string what_;
  const bool enabled_;
  const absl::Time started_ = absl::Now();
  absl::Time last_draw_ = absl::InfinitePast();
  bool drawn_ = false;
};

Json MemberIdsJson(const google::protobuf::RepeatedField<uint64_t>& ids) {
  Json json = Json::array();
  for (const uint64_t id : ids) {
    json.push_back({{"id", id}, {"id_hex", absl::StrFormat("%016x", id)}});
  }
  return json;
}

std::string MemberIdsText(const google::protobuf::RepeatedField<uint64_t>& ids) {
  std::vector<std::string> hex;
  for (const uint64_t id : ids) hex.push_back(absl::StrFormat("%016x", id));
  return hex.empty() ? std::string("none") : absl::StrJoin(hex, " ");
}

// `value` rounded to `decimals` places, as JSON prints timings.
double Rounded(double value, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(value * scale) / scale;
}

// The fields of a timed transfer of `bytes`: seconds and MB/s.
void SetTiming(Json& json, uint64_t bytes, double seconds) {
  json["seconds"] = Rounded(seconds, 3);
  json["mb_per_s"] = Rounded(MegabytesPerSecond(bytes, seconds), 1);
}

// What a backup holds, as `inspect` and `verify` print it; JSON: `json` with the
// manifest's fields added after those it holds.
void PrintManifest(const pb::SnapshotManifest& manifest, uint64_t file_bytes, bool json_output,
                   Json json, const std::string& first_line) {
  const std::string created =
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(manifest.created_unix_ms()),
                       absl::UTCTimeZone());
  const pb::ConfState& conf = manifest.raft().conf_state();
  if (json_output) {
    json["cluster_id"] = manifest.cluster_id();
    json["cluster_id_hex"] = absl::StrFormat("%016x", manifest.cluster_id());
    json["index"] = manifest.raft().index();
    json["term"] = manifest.raft().term();
    json["voters"] = MemberIdsJson(conf.voters());
    json["learners"] = MemberIdsJson(conf.learners());
    json["key_count"] = manifest.key_count();
    json["size_bytes"] = file_bytes;
    json["data_bytes"] = manifest.total_bytes();
    json["file_count"] = manifest.files_size();
    json["created_unix_ms"] = manifest.created_unix_ms();
    json["created"] = created;
    SetBytes(json, "created_by_name", manifest.created_by_name());
    json["created_by_node_id"] = manifest.created_by_node_id();
    json["format_version"] = manifest.format_version();
    PrintJson(json);
    return;
  }
  if (!first_line.empty()) std::printf("%s\n", first_line.c_str());
  std::printf("cluster id   %016llx\n", static_cast<unsigned long long>(manifest.cluster_id()));
  std::printf("index        %llu\n", static_cast<unsigned long long>(manifest.raft().index()));
  std::printf("term         %llu\n", static_cast<unsigned long long>(manifest.raft().term()));
  std::printf("voters       %s\n", MemberIdsText(conf.voters()).c_str());
  std::printf("learners     %s\n", MemberIdsText(conf.learners()).c_str());
  std::printf("keys         %llu\n", static_cast<unsigned long long>(manifest.key_count()));
  std::printf("size         %llu bytes (%d files, %llu data bytes)\n",
              static_cast<unsigned long long>(file_bytes), manifest.files_size(),
              static_cast<unsigned long long>(manifest.total_bytes()));
  std::printf("created      %s by %s (member %016llx)\n", created.c_str(),
              manifest.created_by_name().c_str(),
              static_cast<unsigned long long>(manifest.created_by_node_id()));
}

// {"file": path}, the start of the JSON of every subcommand.
Json FileJson(const std::string& path) {
  Json json;
  SetBytes(json, "file", path);
  return json;
}

// The header, checked against the file's size: a truncated file or one with bytes after
// its end is DataLoss even though its header is whole.
absl::StatusOr<std::pair<pb::SnapshotManifest, uint64_t>> ReadCheckedHeader(const std::string& path) {
  STEAD_ASSIGN_OR_RETURN(pb::SnapshotManifest manifest, storage::ReadBackupHeader(path));
  STEAD_ASSIGN_OR_RETURN(const uint64_t size, storage::files::FileSize(path));
  const uint64_t expected = storage::BackupFileBytes(manifest);
  if (size != expected) {
    return absl::DataLossError(absl::StrCat("backup ", path, " is ",
                                            size < expected ? "truncated" : "longer than its header says",
                                            ": ", size, " bytes, its header says ", expected));
  }
  return std::make_pair(std::move(manifest), size);
}

absl::Status Inspect(const SnapshotFlags& flags, const std::string& path) {
  STEAD_ASSIGN_OR_RETURN(const auto header, ReadCheckedHeader(path));
  PrintManifest(header.first, header.second, flags.json, FileJson(path), "");
  return absl::OkStatus();
}

absl::Status Verify(const SnapshotFlags& flags, const std::string& path) {
  const absl::Time started = absl::Now();
  absl::StatusOr<pb::SnapshotManifest> manifest;
  {
    Progress progress("verifying");
    manifest = storage::VerifyBackupFile(path, [&](uint64_t done, uint64_t total) {
      progress.Update(done, total);
    });
  }
  if (!manifest.ok()) return manifest.status();
  STEAD_ASSIGN_OR_RETURN(const uint64_t size, storage::files::FileSize(path));
  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  Json json = FileJson(path);
  json["ok"] = true;
  SetTiming(json, size, seconds);
  PrintManifest(*manifest, size, flags.json, std::move(json),
                absl::StrFormat("%s: ok (read %.1f MB in %.2f s, %.1f MB/s)", path,
                                static_cast<double>(size) / 1e6, seconds,
                                MegabytesPerSecond(size, seconds)));
  return absl::OkStatus();
}

absl::Status StatusOfError(const pb::Error& error) {
  absl::StatusCode code = absl::StatusCode::kUnknown;
  if (error.code() > 0 && error.code() <= static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    code = static_cast<absl::StatusCode>(error.code());
  }
  return absl::Status(code, error.message());
}

// The save in flight: shared by the connection's handler (its I/O thread) and the
// command's thread.
struct SaveState {
  Mutex mu;
  bool finished ABSL_GUARDED_BY(mu) = false;
  absl::Status status ABSL_GUARDED_BY(mu);
  uint64_t bytes ABSL_GUARDED_BY(mu) = 0;  // file bytes received
  uint64_t total ABSL_GUARDED_BY(mu) = 0;  // of the manifest, once known
  absl::Time last_byte ABSL_GUARDED_BY(mu) = absl::Now();
  // Written by the handler only, under mu, until `finished`.
  std::unique_ptr<storage::BackupStreamWriter> writer ABSL_GUARDED_BY(mu);
};

// The member to save from: --endpoint, or the leader.
absl::StatusOr<std::string> SaveEndpoint(const SnapshotFlags& flags) {
  if (!flags.endpoint.empty()) return flags.endpoint;
  if (flags.client == nullptr) return absl::InvalidArgumentError("no endpoint");
  STEAD_ASSIGN_OR_RETURN(const std::vector<stead::Member> members, flags.client->MemberList());
  for (const stead::Member& member : members) {
    if (member.is_leader) return member.client_address;
  }
  return absl::UnavailableError("no member knows a leader: name a member with --endpoint");
}

// Waits for the save to end, drawing progress; a signal or a stall ends it early.
absl::Status AwaitSave(SaveState& state) {
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  Progress progress("saving   ");
  // Bounded by the stall timeout between bytes, and by a signal.
  for (;;) {
    {
      MutexLock lock(&state.mu);
      if (state.finished) return state.status;
      progress.Update(state.bytes, state.total);
      if (absl::Now() - state.last_byte > kSaveStallTimeout) {
        state.finished = true;
        return absl::DeadlineExceededError(absl::StrCat(
            "no data from the member for ", absl::FormatDuration(kSaveStallTimeout)));
      }
    }
    const timespec tick{0, 100'000'000};
    if (sigtimedwait(&stop_signals, nullptr, &tick) > 0) {
      MutexLock lock(&state.mu);
      state.finished = true;
      return absl::CancelledError("interrupted: no backup was written");
    }
  }
}

absl::Status Save(const SnapshotFlags& flags, const std::string& path) {
  if (!flags.force && storage::files::Exists(path)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " exists: choose another FILE, or --force to replace it"));
  }
  STEAD_ASSIGN_OR_RETURN(const std::string endpoint, SaveEndpoint(flags));
  auto state = std::make_shared<SaveState>();
  {
    STEAD_ASSIGN_OR_RETURN(auto writer, storage::BackupStreamWriter::Create(path, flags.force));
    MutexLock lock(&state->mu);
    state->writer = std::move(writer);
  }
  pb::ClientRequest request;
  request.set_request_id(1);
  request.mutable_snapshot_save();
  if (flags.client != nullptr) {
    // With --user: the stream is opened on a connection of its own, with the token.
    STEAD_ASSIGN_OR_RETURN(std::string token, flags.client->AuthToken());
    request.set_auth_token(std::move(token));
  }
  std::string frame;
  STEAD_RETURN_IF_ERROR(server::AppendFrame(request, 1u << 20, &frame));

  asio::io_context io;
  auto work = asio::make_work_guard(io);
  STEAD_ASSIGN_OR_RETURN(std::shared_ptr<wire::TlsContextProvider> tls,
                         client_internal::MakeClientTlsProvider(flags.tls));
  auto connection = std::make_shared<client_internal::Connection>(
      io, endpoint, absl::Seconds(5), 64u << 20, tls, flags.tls.server_name);
  const absl::Time started = absl::Now();
  // Runs on the connection's strand. Writing to FILE here, before the next read, is
  // the flow control: while the disk is slower than the member, the socket fills and
  // the member pauses.
  connection->SendStream(1, std::move(frame), [state](absl::StatusOr<pb::ClientResponse> answer) {
    MutexLock lock(&state->mu);
    if (state->finished) return;
    absl::Status status = answer.status();
    if (status.ok() && answer->has_error()) status = StatusOfError(answer->error());
    if (status.ok() && !answer->snapshot_save().done()) {
      status = state->writer->Write(answer->snapshot_save().chunk());
      if (status.ok()) {
        state->bytes = state->writer->bytes_done();
        if (state->writer->manifest() != nullptr) state->total = state->writer->manifest()->total_bytes();
        state->last_byte = absl::Now();
        return;
      }
    }
    state->finished = true;
    state->status = status;
  });
  std::thread io_thread([&io] { io.run(); });
  absl::Status status = AwaitSave(*state);
  connection->Close();
  work.reset();
  io.stop();
  io_thread.join();
  MutexLock lock(&state->mu);
  if (!status.ok()) return Annotate(status, absl::StrCat("save from ", endpoint));
  STEAD_ASSIGN_OR_RETURN(const pb::SnapshotManifest manifest, state->writer->Finish());
  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  STEAD_ASSIGN_OR_RETURN(const uint64_t size, storage::files::FileSize(path));
  if (flags.json) {
    Json json = FileJson(path);
    json["bytes"] = size;
    SetTiming(json, size, seconds);
    json["index"] = manifest.raft().index();
    json["term"] = manifest.raft().term();
    json["key_count"] = manifest.key_count();
    json["cluster_id"] = manifest.cluster_id();
    SetBytes(json, "member", manifest.created_by_name());
    SetBytes(json, "endpoint", endpoint);
    PrintJson(json);
  } else {
    std::printf("saved %s: %llu bytes in %.2f s (%.1f MB/s), index %llu term %llu, %llu keys, "
                "from %s (%s)\n",
                path.c_str(), static_cast<unsigned long long>(size), seconds,
                MegabytesPerSecond(size, seconds),
                static_cast<unsigned long long>(manifest.raft().index()),
                static_cast<unsigned long long>(manifest.raft().term()),
                static_cast<unsigned long long>(manifest.key_count()),
                manifest.created_by_name().c_str(), endpoint.c_str());
  }
  return absl::OkStatus();
}

uint64_t RandomNonZero() {
  std::random_device random;
  uint64_t value = 0;
  while (value == 0) value = (uint64_t{random()} << 32) ^ random();
  return value;
}

absl::Status Restore(const SnapshotFlags& flags, const std::string& path) {
  for (const auto& [flag, value] : {std::pair{"--data-dir", &flags.data_dir},
                                    std::pair{"--wal-dir", &flags.wal_dir},
                                    std::pair{"--name", &flags.name},
                                    std::pair{"--peer-addr", &flags.peer_addr},
                                    std::pair{"--client-addr", &flags.client_addr}}) {
    if (value->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("snapshot restore needs ", flag, " (see steadctl snapshot restore --help)"));
    }
  }
  storage::RestoreOptions options;
  options.backup_path = path;
  options.data_dir = flags.data_dir;
  options.wal_dir = flags.wal_dir;
  options.self.set_id(RandomNonZero());
  options.self.set_name(flags.name);
  options.self.set_peer_address(flags.peer_addr);
  options.self.set_client_address(flags.client_addr);
  options.cluster_id = RandomNonZero();
  // The runtime's keyspaces are those of the backup; any it adds later it creates.
  options.keyspaces = {"kv", storage::kMembersKeyspace};
  const absl::Time started = absl::Now();
  std::unique_ptr<Progress> progress;
  std::string phase;
  options.progress = [&](absl::string_view step, uint64_t done, uint64_t total) {
    if (step != phase) {
      phase = std::string(step);
      progress.reset();
      progress = std::make_unique<Progress>(absl::StrFormat("%-9s", step));
    }
    progress->Update(done, total);
  };
  absl::StatusOr<storage::RestoreResult> result = storage::RestoreFromBackup(options);
  progress.reset();
  if (!result.ok()) return result.status();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - started);
  const uint64_t bytes = result->manifest.total_bytes();
  if (flags.json) {
    Json json = FileJson(path);
    SetBytes(json, "data_dir", flags.data_dir);
    SetBytes(json, "wal_dir", flags.wal_dir);
    SetBytes(json, "name", flags.name);
    json["member_id"] = options.self.id();
    json["cluster_id"] = options.cluster_id;
    json["cluster_id_hex"] = absl::StrFormat("%016x", options.cluster_id);
    json["from_cluster_id"] = result->manifest.cluster_id();
    json["backup_index"] = result->manifest.raft().index();
    json["index"] = result->index;
    json["term"] = result->term;
    json["key_count"] = result->manifest.key_count();
    json["bytes"] = bytes;
    SetTiming(json, bytes, seconds);
    PrintJson(json);
  } else {
    std::printf("restored %s into %s and %s: %llu keys, %llu bytes in %.2f s (%.1f MB/s); new "
                "cluster %016llx, member %s (%016llx), log starts after index %llu\n",
                path.c_str(), flags.data_dir.c_str(), flags.wal_dir.c_str(),
                static_cast<unsigned long long>(result->manifest.key_count()),
                static_cast<unsigned long long>(bytes), seconds, MegabytesPerSecond(bytes, seconds),
                static_cast<unsigned long long>(options.cluster_id), flags.name.c_str(),
                static_cast<unsigned long long>(options.self.id()),
                static_cast<unsigned long long>(result->index));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunSnapshot(const SnapshotFlags& flags) {
  const std::string sub = flags.args.size() >= 2 ? flags.args[1] : "";
  if (flags.args.size() != 3 ||
      (sub != "save" && sub != "verify" && sub != "inspect" && sub != "restore")) {
    return absl::InvalidArgumentError(
        "snapshot needs 'save FILE', 'verify FILE', 'inspect FILE' or 'restore FILE ...' "
        "(see steadctl snapshot --help)");
  }
  const std::string& path = flags.args[2];
  if (sub == "save") return Save(flags, path);
  if (sub == "verify") return Verify(flags, path);
  if (sub == "inspect") return Inspect(flags, path);
  return Restore(flags, path);
}

}  // namespace stead::ctl
