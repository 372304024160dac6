// stead::Node: wires the runtime's parts together and runs a member's life: bootstrap
// or join, serving, membership upkeep on the leader, graceful shutdown. The identity
// and bootstrap protocol is described in server/README.md.
#include "stead/node.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <future>
#include <map>
#include <random>
#include <set>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/asio.h"
#include "base/check.h"
#include "base/failpoint.h"
#include "base/log.h"
#include "base/mutex.h"
#include "base/status_macros.h"
#include "proto/peer.pb.h"
#include "raft/conf_change.h"
#include "server/auth_check.h"
#include "server/auth_store.h"
#include "server/backup_service.h"
#include "server/client_service.h"
#include "server/config.h"
#include "server/cpus.h"
#include "server/discovery.h"
#include "server/forwarder.h"
#include "server/http_server.h"
#include "server/kv_apply.h"
#include "server/kv_service.h"
#include "server/listener.h"
#include "server/member_admin.h"
#include "server/member_file.h"
#include "server/metrics.h"
#include "server/peer_transport.h"
#include "server/raft_node.h"
#include "server/snapshot_store.h"
#include "server/watch_hub.h"
#include "storage/checkpoint_files.h"
#include "storage/reidentify.h"
#include "storage/restore.h"
#include "storage/state_machine.h"
#include "storage/wal.h"
#include "wire/tls_context.h"

namespace stead {

namespace asio = boost::asio;
using server::HostPort;
using AdminDone = std::function<void(absl::StatusOr<pb::ClientResponse>)>;
using server::MemberName;
using server::ResponseCallback;
using server::ServerConfig;

namespace {

// Where member records live in the state machine: one key per node id.
constexpr char kMembersKeyspace[] = "members";
static_assert(std::string_view(kMembersKeyspace) == storage::kMembersKeyspace,
              "a restore writes the member records where the runtime reads them");
// How far applied may trail commit for /readyz.
constexpr uint64_t kReadyApplyLag = 1000;
// Pace of the supervisor (join retries, membership upkeep, removal checks).
constexpr absl::Duration kSupervisorPeriod = absl::Milliseconds(200);
constexpr absl::Duration kDiscoveryTimeout = absl::Seconds(2);
constexpr absl::Duration kJoinRetryPeriod = absl::Seconds(1);
// Refused joiners remembered (to log each once) before the memory starts over.
constexpr size_t kMaxRememberedRefusals = 1024;
// The waiting member says what it waits for this often.
constexpr absl::Duration kWaitLogPeriod = absl::Seconds(10);
// A member without a leader for this long checks whether it was removed.
constexpr absl::Duration kLeaderlessCheckAfter = absl::Seconds(3);

std::string MemberKey(raft::NodeId id) { return storage::MemberRecordKey(id); }

uint64_t RandomNonZero() {
  std::random_device random;
  uint64_t value = 0;
  while (value == 0) value = (uint64_t{random()} << 32) ^ random();
  return value;
}

std::string WalIdentity(uint64_t cluster_id, raft::NodeId node_id, const std::string& name) {
  return storage::MemberWalIdentity(cluster_id, node_id, name);  // what a restore writes too
}

absl::StatusOr<HostPort> ParseAddress(const std::string& text) {
  return server::ParseHostPort(text, "member address", "");
}

// Logs the phases of a long task at start (a restore, a re-identification) and every
// tenth of a phase's bytes, with the time since the task began.
class ProgressLog {
 public:
  ProgressLog(const Logger& logger, std::string task)
      : logger_(logger), task_(std::move(task)), started_(absl::Now()) {}

  void operator()(absl::string_view phase, uint64_t done, uint64_t total) {
    const int64_t tenth = total == 0 ? 0 : static_cast<int64_t>(done * 10 / total);
    if (phase == last_phase_ && tenth == last_tenth_) return;
    last_phase_ = std::string(phase);
    last_tenth_ = tenth;
    STEAD_LOG(logger_, Info) << task_ << ": " << phase << " "
                             << (total == 0 ? std::string()
                                            : absl::StrCat(tenth * 10, "% of ", total, " bytes, "))
                             << absl::StrFormat("%.1f s", Seconds());
  }

  double Seconds() const { return absl::ToDoubleSeconds(absl::Now() - started_); }

  // "<seconds> s (<rate> MB/s)" for `bytes` done since the task began.
  std::string Rate(uint64_t bytes) const {
    const double seconds = Seconds();
    return absl::StrFormat("%.2f s (%.1f MB/s)", seconds,
                           seconds > 0 ? static_cast<double>(bytes) / 1e6 / seconds : 0.0);
  }

 private:
  const Logger& logger_;
  const std::string task_;
  const absl::Time started_;
  std::string last_phase_;
  int64_t last_tenth_ = -1;
};

}  // namespace

struct Node::Impl {
  enum class Phase { kDiscovering, kRunning, kRemoved, kFailed, kStopped };

  explicit Impl(const ServerConfig& config_in)
      : config(config_in),
        member(server::ParseMemberName(config.name).value()),
        logger(Logger(config.log_level).WithContext("member", config.name)),
        work(asio::make_work_guard(io)) {}

  ~Impl() { Stop(); }

  // --- start ---------------------------------------------------------------------

  // The planted bugs of STEAD_FAILPOINTS (base/failpoint.h): each named loudly, an
  // unknown name refused, so a typo cannot pass for a test of a planted bug.
  absl::Status CheckFailpoints() {
    for (const std::string& name : NamedFailpoints()) {
      if (!IsKnownFailpoint(name)) {
        return absl::InvalidArgumentError(
            absl::StrCat("STEAD_FAILPOINTS names an unknown failpoint '", name,
                         "': unset the variable (it is for tests only)"));
      }
      STEAD_LOG(logger, Warning) << "failpoint " << name
                                 << " is on: this member has a planted bug, for tests only";
    }
    return absl::OkStatus();
  }

  absl::Status Start() {
    STEAD_RETURN_IF_ERROR(CheckFailpoints());
    // Decided before anything touches the volumes.
    STEAD_ASSIGN_OR_RETURN(const bool restore, ShouldRestore());
    STEAD_ASSIGN_OR_RETURN(const bool reidentify, CheckIdentityToken());
    STEAD_ASSIGN_OR_RETURN(std::optional<pb::NodeMetadata> metadata,
                           storage::StateMachine::ReadNodeMetadata(config.data_dir));
    pb::MemberBootstrap bootstrap;
    if (restore || reidentify) {
      bootstrap.set_node_id(RandomNonZero());  // a new member of a new cluster
    } else if (metadata) {
      bootstrap.set_cluster_id(metadata->cluster_id());
      bootstrap.set_node_id(metadata->node_id());
    } else {
      STEAD_ASSIGN_OR_RETURN(bootstrap, server::LoadOrCreateMemberFile(config.data_dir,
                                                                      RandomNonZero()));
    }
    {
      MutexLock lock(&mu);
      node_id = bootstrap.node_id();
    }

    RegisterMetrics();
    STEAD_RETURN_IF_ERROR(MakeTlsProviders());
    const uint64_t open_file_limit = server::OpenFileLimit();
    const server::ConnectionCaps caps = server::DefaultConnectionCaps(open_file_limit);
    server::PeerTransportOptions transport_options;
    transport_options.node_name = config.name;
    transport_options.tls_server = peer_tls_server;
    transport_options.tls_client = peer_tls_client;
    transport_options.advertised_host = config.advertise_host;
    transport_options.max_inbound_connections = caps.peer_unauthenticated;
    transport_options.max_authenticated_connections = caps.peer_authenticated;
    transport_options.snapshot_bytes_per_second =
        static_cast<uint64_t>(config.snapshot_send_mb_per_second) * 1000 * 1000;
    transport = std::make_unique<server::PeerTransport>(
        io, transport_options, logger.WithContext("part", "peers"),
        [this](pb::Message message) {
          if (server::RaftNode* node = raft_ptr.load()) node->Step(std::move(message));
        },
        [this](raft::NodeId peer) {
          if (server::RaftNode* node = raft_ptr.load()) node->ReportUnreachable(peer);
        });
    transport->SetDiscoveryHandler(
        [this](const pb::DiscoveryRequest& request) { return AnswerDiscovery(request); });

    server::HttpServerOptions http_options;
    http_options.max_connections = caps.http;
    http_options.tls = http_tls;
    http = std::make_unique<server::HttpServer>(io, http_options,
                                                logger.WithContext("part", "http"));
    http->Handle("/healthz", [this](const server::HttpRequest&) { return Healthz(); });
    http->Handle("/readyz", [this](const server::HttpRequest&) { return Readyz(); });
    http->Handle("/metrics", [this](const server::HttpRequest&) {
      server::HttpResponse response;
      response.content_type = "text/plain; version=0.0.4; charset=utf-8";
      response.body = metrics.Render();
      return response;
    });
    STEAD_RETURN_IF_ERROR(http->Listen(config.http_addr.host, config.http_addr.port));

    forwarder = std::make_unique<server::Forwarder>(io, logger.WithContext("part", "forward"),
                                                    forward_tls);
    server::BackupServiceOptions backup_options;
    // Reserved for saves; the runtime's own checkpoints live beside it.
    backup_options.checkpoint_dir = config.data_dir + "/checkpoints/backup";
    backups = std::make_unique<server::BackupService>(backup_options,
                                                      logger.WithContext("part", "backup"));
    watches = std::make_unique<server::WatchHub>(server::WatchHubOptions(),
                                                 logger.WithContext("part", "watch"));
    server::ClientServiceOptions client_options;
    client_options.max_connections =
        config.max_client_connections != 0 ? config.max_client_connections : caps.client;
    client_options.idle_timeout = config.client_idle_timeout;
    client_options.read_timeout = config.client_read_timeout;
    client_options.tls = client_tls;
    client_options.certificate_identity =
        client_tls != nullptr && config.client_tls.require_peer_certificate;
    client_options.authorize = [this](pb::ClientRequest* request, const std::string& user,
                                      bool ongoing) {
      const server::Authorizer* auth = authorizer_ptr.load();
      if (auth == nullptr) return absl::UnavailableError("this member is not serving yet");
      absl::Status checked = auth->Check(request, user, ongoing);
      // On a damaged state machine the check's own read fails: the member serves
      // nothing, and says so as the key-value service does (UNAVAILABLE, the advice).
      if (absl::Status damage = state->damage(); !checked.ok() && !damage.ok()) {
        return absl::UnavailableError(damage.message());
      }
      return checked;
    };
    STEAD_LOG(logger, Info) << "open file limit " << open_file_limit << ": connections up to "
                            << client_options.max_connections << " clients, " << caps.http
                            << " HTTP, " << caps.peer_authenticated << " peers and "
                            << caps.peer_unauthenticated << " others on the peer port";
    client = std::make_unique<server::ClientService>(
        io, client_options, logger.WithContext("part", "clients"),
        [this](pb::ClientRequest request, server::ResponseCallback done) {
          HandleRequest(std::move(request), std::move(done));
        },
        watches.get(), backups.get(), [this] { return StreamsRefusedBecause(); });
    STEAD_RETURN_IF_ERROR(client->Listen(config.client_addr.host, config.client_addr.port));
    // Last: discovery answers carry the client and HTTP ports, which are bound now.
    STEAD_RETURN_IF_ERROR(transport->Listen(config.peer_addr.host, config.peer_addr.port));

    const int threads = config.io_threads > 0
                            ? config.io_threads
                            : server::DefaultIoThreads(server::AvailableCpus());
    for (int i = 0; i < threads; ++i) io_threads.emplace_back([this] { io.run(); });

    // After the listeners: the member record of the restored member carries its ports.
    // Before anything talks to peers: the supervisor is not running yet and the
    // transport has no cluster identity, so nothing leaves under the old one.
    if (restore) {
      STEAD_ASSIGN_OR_RETURN(bootstrap, RestoreFromBackup(bootstrap.node_id()));
    } else if (reidentify) {
      STEAD_ASSIGN_OR_RETURN(bootstrap, ReidentifyClone(bootstrap.node_id()));
    }
    if (bootstrap.cluster_id() != 0) {
      // The cluster is known: open the volumes now, so a wrong volume fails the start.
      STEAD_RETURN_IF_ERROR(Activate(bootstrap));
    } else {
      STEAD_LOG(logger, Info) << "volumes are empty: looking for the cluster as pending node "
                              << bootstrap.node_id();
    }
    supervisor = std::thread([this, bootstrap] { Supervise(bootstrap); });
    STEAD_LOG(logger, Info) << "listening: clients " << config.client_addr.host << ":"
                            << client->port() << ", peers " << config.peer_addr.host << ":"
                            << transport->listen_port() << ", http " << config.http_addr.host
                            << ":" << http->port() << "; " << io_threads.size() << " io threads";
    return absl::OkStatus();
  }

  // The TLS context providers of the ports that speak TLS, and of this member's own
  // dials: to peers with the peer port's files, to the leader's client port with the
  // client port's. Every port takes its contexts from a provider, so rewritten files
  // reach new connections without a restart.
  absl::Status MakeTlsProviders() {
    const Logger tls_logger = logger.WithContext("part", "tls");
    auto make = [&](const wire::TlsOptions& options, wire::TlsRole role,
                    std::shared_ptr<wire::TlsContextProvider>* out) -> absl::Status {
      if (!server::TlsEnabled(options)) return absl::OkStatus();
      STEAD_ASSIGN_OR_RETURN(*out, wire::TlsContextProvider::Create(options, role, tls_logger));
      return absl::OkStatus();
    };
    STEAD_RETURN_IF_ERROR(make(config.client_tls, wire::TlsRole::kServer, &client_tls));
    STEAD_RETURN_IF_ERROR(make(config.client_tls, wire::TlsRole::kClient, &forward_tls));
    STEAD_RETURN_IF_ERROR(make(config.peer_tls, wire::TlsRole::kServer, &peer_tls_server));
    STEAD_RETURN_IF_ERROR(make(config.peer_tls, wire::TlsRole::kClient, &peer_tls_client));
    STEAD_RETURN_IF_ERROR(make(config.http_tls, wire::TlsRole::kServer, &http_tls));
    if (config.tls_transition) {
      STEAD_LOG(tls_logger, Warning)
          << "--tls-transition: the ports with TLS also accept plain connections, and "
             "connections to members without TLS fall back to plain; once every member "
             "runs with TLS, restart each without --tls-transition (docs/security.md)";
    }
    return absl::OkStatus();
  }

  // --- restore (--restore-from) ------------------------------------------------------

  // Whether this start restores --restore-from: only into empty volumes (or over a
  // restore a crash interrupted), so every later start is an ordinary one.
  absl::StatusOr<bool> ShouldRestore() const {
    STEAD_ASSIGN_OR_RETURN(const bool accepts,
                           storage::VolumesAcceptRestore(config.data_dir, config.wal_dir));
    const bool interrupted =
        accepts && storage::files::IsDirectory(config.data_dir + "/checkpoints/restore");
    if (config.restore_from.empty()) {
      if (interrupted) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the volumes hold a restore that did not finish (", config.data_dir,
            "/checkpoints/restore): start again with the same --restore-from, or wipe both "
            "volumes"));
      }
      return false;
    }
    if (!accepts) {
      STEAD_LOG(logger, Info) << "--restore-from=" << config.restore_from
                              << " ignored: the volumes are in use already";
    }
    return accepts;
  }

  // Restores --restore-from as member `id` of a new cluster; the bootstrap to start as.
  absl::StatusOr<pb::MemberBootstrap> RestoreFromBackup(raft::NodeId id) {
    storage::RestoreOptions options;
    options.backup_path = config.restore_from;
    options.data_dir = config.data_dir;
    options.wal_dir = config.wal_dir;
    options.self = SelfInfo();
    options.self.set_id(id);
    options.cluster_id = RandomNonZero();
    options.keyspaces = server::KvKeyspaces();
    options.keyspaces.push_back(kMembersKeyspace);
    options.logger = logger.WithContext("part", "restore");
    ProgressLog progress(logger, absl::StrCat("restore from ", config.restore_from));
    options.progress = std::ref(progress);
    STEAD_LOG(logger, Info) << "volumes are empty: restoring " << config.restore_from
                            << " as the first member of new cluster "
                            << absl::StrCat(absl::Hex(options.cluster_id));
    STEAD_ASSIGN_OR_RETURN(const storage::RestoreResult result,
                           Annotate(storage::RestoreFromBackup(options),
                                    absl::StrCat("restore ", config.restore_from)));
    STEAD_LOG(logger, Info) << "restored index " << result.manifest.raft().index() << " of cluster "
                            << absl::StrCat(absl::Hex(result.manifest.cluster_id())) << " ("
                            << result.manifest.key_count() << " keys, "
                            << result.manifest.total_bytes() << " bytes) in "
                            << progress.Rate(result.manifest.total_bytes())
                            << "; the log starts after index " << result.index;
    pb::MemberBootstrap bootstrap;
    bootstrap.set_cluster_id(options.cluster_id);
    bootstrap.set_node_id(id);
    return bootstrap;
  }

  // --- clones (--new-cluster-identity) ------------------------------------------------

  // Empty volumes record the token; volumes of a member born under it start as usual.
  // Whether this start re-identifies copied volumes (storage/reidentify.h). Without
  // the flag, volumes a re-identification left half done are refused.
  absl::StatusOr<bool> CheckIdentityToken() const {
    const std::string& token = config.new_cluster_identity;
    if (token.empty()) {
      if (storage::ReidentificationInterrupted(config.data_dir)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "the volumes hold a re-identification that did not finish (", config.data_dir,
            "/checkpoints/reidentify): start again with the same --new-cluster-identity"));
      }
      return false;
    }
    STEAD_ASSIGN_OR_RETURN(
        const storage::VolumeIdentity found,
        storage::InspectVolumeIdentity(config.data_dir, config.wal_dir, token));
    switch (found) {
      case storage::VolumeIdentity::kEmpty:
        STEAD_LOG(logger, Info) << "volumes are empty: this member is born under identity token "
                                << token;
        STEAD_RETURN_IF_ERROR(storage::WriteIdentityToken(config.data_dir, token));
        return false;
      case storage::VolumeIdentity::kSameToken:
        // A take that crashed before clearing leaves a checkpoint holding old files.
        STEAD_RETURN_IF_ERROR(storage::RemoveAbandonedTake(config.data_dir));
        return false;
      case storage::VolumeIdentity::kOther:
        break;
    }
    if (member.ordinal != 0) {
      // Only the first member of a clone starts from copied volumes; the others join it
      // empty. Anything else here is a mistake: a copy on the wrong ordinal, or a token
      // changed on a running cluster, whose members would each split off on their own.
      STEAD_ASSIGN_OR_RETURN(const std::optional<std::string> recorded,
                             storage::ReadIdentityToken(config.data_dir));
      return absl::FailedPreconditionError(absl::StrCat(
          "--new-cluster-identity=", token, ": the volumes hold a member recorded under ",
          recorded ? absl::StrCat("token ", *recorded) : std::string("no token"),
          "; only ordinal 0 of a clone is re-identified from copied volumes. Wipe this "
          "member's volumes so it joins as a new member, or start it with the token of its "
          "cluster"));
    }
    return true;
  }

  // Re-identifies the copied volumes as member `id` of a new cluster; the bootstrap to
  // start as.
  absl::StatusOr<pb::MemberBootstrap> ReidentifyClone(raft::NodeId id) {
    storage::ReidentifyOptions options;
    options.token = config.new_cluster_identity;
    options.member.data_dir = config.data_dir;
    options.member.wal_dir = config.wal_dir;
    options.member.self = SelfInfo();
    options.member.self.set_id(id);
    options.member.cluster_id = RandomNonZero();
    options.member.keyspaces = server::KvKeyspaces();
    options.member.keyspaces.push_back(kMembersKeyspace);
    options.member.logger = logger.WithContext("part", "reidentify");
    ProgressLog progress(logger, absl::StrCat("re-identify as ", config.new_cluster_identity));
    options.member.progress = std::ref(progress);
    STEAD_LOG(logger, Info) << "--new-cluster-identity=" << config.new_cluster_identity
                            << ": the volumes hold a member of another cluster (a copy); "
                               "re-identifying them as the first member of new cluster "
                            << absl::StrCat(absl::Hex(options.member.cluster_id));
    STEAD_ASSIGN_OR_RETURN(const storage::ReidentifyResult result,
                           Annotate(storage::Reidentify(options),
                                    "--new-cluster-identity: re-identify the volumes (start "
                                    "again with the same flag to continue)"));
    STEAD_LOG(logger, Info) << "re-identified cluster " << absl::StrCat(absl::Hex(result.old_cluster_id))
                            << " -> " << absl::StrCat(absl::Hex(options.member.cluster_id))
                            << (result.resumed ? " (continued after a crash)" : "") << ": index "
                            << result.manifest.raft().index() << " ("
                            << result.manifest.key_count() << " keys, "
                            << result.manifest.total_bytes() << " bytes) in "
                            << progress.Rate(result.manifest.total_bytes())
                            << "; the log starts after index " << result.index
                            << "; recorded identity token " << config.new_cluster_identity;
    pb::MemberBootstrap bootstrap;
    bootstrap.set_cluster_id(options.member.cluster_id);
    bootstrap.set_node_id(id);
    return bootstrap;
  }

  // --- disaster recovery (--force-new-cluster) ----------------------------------------

  // Makes this member the only voter of its cluster, on its own: appends to its log one
  // REMOVE_NODE for every other member (and an ADD_VOTER for itself if it is a learner)
  // and persists a hard state that commits the whole log. Raft then applies every entry
  // this member holds (as etcd's --force-new-cluster does: entries the lost quorum may
  // have committed are kept rather than dropped) and the membership changes on start,
  // and the member elects itself. Called on the opened WAL before Raft starts; a member
  // that is alone already writes nothing, so a restart with the flag still set is
  // harmless.
  absl::Status ForceNewCluster(raft::NodeId id) {
    const raft::PersistedState persisted = wal->InitialState();
    pb::ConfState conf = persisted.snapshot.conf_state();
    const raft::Index last = wal->LastIndex();
    raft::Term last_term = persisted.snapshot.term();
    // The configuration at the end of the log: the snapshot's, then every change after it.
    for (raft::Index low = wal->FirstIndex(); low <= last;) {
      STEAD_ASSIGN_OR_RETURN(std::vector<pb::Entry> entries,
                             wal->Entries(low, last + 1, uint64_t{64} << 20));
      if (entries.empty()) break;
      for (const pb::Entry& entry : entries) {
        last_term = entry.term();
        pb::ConfChange change;
        if (entry.type() != pb::ENTRY_TYPE_CONF_CHANGE || !change.ParseFromString(entry.data())) {
          continue;
        }
        if (raft::ValidateConfChange(conf, change).ok()) conf = raft::ApplyConfChange(conf, change);
      }
      low = entries.back().index() + 1;
    }
    if (!raft::IsVoter(conf, id) && !raft::IsLearner(conf, id)) {
      return absl::FailedPreconditionError(
          "--force-new-cluster: this member is not in its own configuration; pick another "
          "survivor");
    }
    const raft::Term term = std::max(persisted.hard_state.term(), last_term);
    std::vector<pb::ConfChange> changes;
    for (const auto* ids : {&conf.voters(), &conf.learners()}) {
      for (const raft::NodeId other : *ids) {
        if (other == id) continue;
        pb::ConfChange change;
        change.set_type(pb::CONF_CHANGE_TYPE_REMOVE_NODE);
        change.set_node_id(other);
        changes.push_back(change);
      }
    }
    if (raft::IsLearner(conf, id)) {
      pb::ConfChange change;
      change.set_type(pb::CONF_CHANGE_TYPE_ADD_VOTER);
      change.set_node_id(id);
      change.set_context(SelfInfo().SerializeAsString());
      changes.push_back(change);
    }
    if (changes.empty() && persisted.hard_state.commit() == last) {
      STEAD_LOG(logger, Info) << "--force-new-cluster: this member is alone already";
      return absl::OkStatus();
    }
    storage::WalWrite write;
    for (const pb::ConfChange& change : changes) {
      pb::Entry entry;
      entry.set_term(term);
      entry.set_index(last + write.entries.size() + 1);
      entry.set_type(pb::ENTRY_TYPE_CONF_CHANGE);
      entry.set_data(change.SerializeAsString());
      write.entries.push_back(std::move(entry));
    }
    pb::HardState hard_state = persisted.hard_state;
    hard_state.set_term(term);
    hard_state.set_commit(last + write.entries.size());
    write.hard_state = hard_state;
    STEAD_LOG(logger, Warning) << "--force-new-cluster: committing the log through index "
                               << hard_state.commit() << " (was " << persisted.hard_state.commit()
                               << ") and removing " << changes.size()
                               << " other members; this member becomes the only voter. Wipe "
                                  "the other members' volumes before starting them again";
    return Annotate(wal->Write(std::move(write)), "--force-new-cluster");
  }

  // Notices, from its peers' answers, a member running on stale volumes (a removed
  // member's or another cluster's): from then on it serves nothing, not even
  // serializable reads of data that is not its cluster's, until a peer accepts it
  // again or the operator replaces its volumes. Supervisor thread.
  void CheckForStaleVolumes(const server::RaftNodeStatus& status) {
    const std::map<raft::NodeId, server::PeerState> peers = transport->Peers();
    const uint64_t other_cluster =
        server::StaleVolumesEvidence(peers, status.conf_state, status.id);
    const bool connected = std::any_of(peers.begin(), peers.end(),
                                       [](const auto& entry) { return entry.second.connected; });
    MutexLock lock(&mu);
    if (other_cluster != 0 && stale_volumes.empty()) {
      stale_volumes = absl::StrCat("the peers belong to cluster ", absl::Hex(other_cluster),
                                   ", this member to cluster ", absl::Hex(cluster_id), ": ",
                                   server::kStaleVolumesAdvice);
      STEAD_LOG(logger, Error) << stale_volumes << "; until then it serves nothing";
      on_stale_volumes = true;
    } else if (connected && !stale_volumes.empty()) {
      STEAD_LOG(logger, Info) << "a peer of this member's cluster accepts it again: serving";
      stale_volumes.clear();
      on_stale_volumes = false;
    }
  }

  // Why watches and snapshot saves, which the client port serves without HandleRequest,
  // are refused now; OK while they may be served.
  absl::Status StreamsRefusedBecause() const {
    if (std::string stale = StaleVolumes(); !stale.empty()) return absl::UnavailableError(stale);
    if (kv_ptr.load() == nullptr) return absl::UnavailableError("this member is not serving");
    return absl::OkStatus();
  }

  // Called for every client request: the common case reads one atomic, not the mutex.
  std::string StaleVolumes() const {
    if (!on_stale_volumes.load(std::memory_order_relaxed)) return "";
    MutexLock lock(&mu);
    return stale_volumes;
  }

  pb::MemberInfo SelfInfo() const {
    pb::MemberInfo info;
    {
      MutexLock lock(&mu);
      info.set_id(node_id);
    }
    info.set_name(config.name);
    info.set_peer_address(HostPort{config.advertise_host, transport->listen_port()}.ToString());
    info.set_client_address(HostPort{config.advertise_host, client->port()}.ToString());
    return info;
  }

  // The peers of the initial configuration (and any other listed in --peers), except
  // this member: whom to ask while looking for the cluster.
  std::vector<std::pair<std::string, HostPort>> SeedPeers() const {
    std::vector<std::pair<std::string, HostPort>> seeds;
    if (!config.peers.empty()) {
      for (const server::PeerSpec& peer : config.peers) {
        if (peer.name != config.name) seeds.emplace_back(peer.name, peer.address);
      }
      return seeds;
    }
    for (int ordinal = 0; ordinal < config.initial_cluster_size; ++ordinal) {
      if (ordinal == member.ordinal) continue;
      const MemberName other{member.set, ordinal};
      seeds.emplace_back(absl::StrCat(member.set, "-", ordinal), config.PeerAddressOf(other));
    }
    return seeds;
  }

  bool IsInitialMember() const { return member.ordinal < config.initial_cluster_size; }

  // --- bootstrap (supervisor thread) -----------------------------------------------

  // Asks the seeds until this member knows its cluster: an existing one it adopts or
  // joins, or (ordinal 0, every initial member present and empty) a new one.
  std::optional<pb::MemberBootstrap> Discover(pb::MemberBootstrap bootstrap) {
    absl::Time next_report = absl::Now() + kWaitLogPeriod;
    while (!stopping) {
      pb::DiscoveryRequest request;
      request.set_protocol_version(server::kDiscoveryProtocolVersion);
      *request.mutable_from() = SelfInfo();
      // Only the initial members decide whether a new cluster forms; anyone may
      // already belong to one.
      std::vector<pb::MemberInfo> empty_peers;
      std::vector<std::string> waiting_for;
      for (const auto& [name, address] : SeedPeers()) {
        absl::StatusOr<MemberName> seed = server::ParseMemberName(name);
        const bool initial = seed.ok() && seed->ordinal < config.initial_cluster_size;
        absl::StatusOr<pb::DiscoveryResponse> answer =
            server::AskPeer(address, request, kDiscoveryTimeout, peer_tls_client);
        if (!answer.ok()) {
          if (initial) waiting_for.push_back(absl::StrCat(name, " (", answer.status().message(), ")"));
          continue;
        }
        if (answer->cluster_id() != 0) {
          STEAD_LOG(logger, Info) << name << " belongs to cluster " << absl::StrCat(absl::Hex(answer->cluster_id()))
                                  << ": joining it";
          LearnMembers(*answer);
          bootstrap.set_cluster_id(answer->cluster_id());
          return bootstrap;
        }
        if (initial) empty_peers.push_back(answer->responder());
      }
      const bool all_initial_present =
          static_cast<int>(empty_peers.size()) + 1 >= config.initial_cluster_size &&
          waiting_for.empty();
      if (member.ordinal == 0 && IsInitialMember() && all_initial_present) {
        return FormCluster(std::move(bootstrap), std::move(empty_peers));
      }
      if (absl::Now() >= next_report) {
        next_report = absl::Now() + kWaitLogPeriod;
        STEAD_LOG(logger, Info)
            << "waiting for the cluster: "
            << (waiting_for.empty() ? std::string("no member has formed it yet")
                                    : absl::StrCat("cannot reach ", absl::StrJoin(waiting_for, ", ")));
      }
      SleepFor(absl::Milliseconds(500));
    }
    return std::nullopt;
  }

  pb::MemberBootstrap FormCluster(pb::MemberBootstrap bootstrap,
                                  std::vector<pb::MemberInfo> others) {
    bootstrap.set_cluster_id(RandomNonZero());
    *bootstrap.add_initial_voters() = SelfInfo();
    std::sort(others.begin(), others.end(),
              [](const pb::MemberInfo& a, const pb::MemberInfo& b) { return a.name() < b.name(); });
    for (pb::MemberInfo& other : others) *bootstrap.add_initial_voters() = std::move(other);
    std::vector<std::string> names;
    for (const pb::MemberInfo& voter : bootstrap.initial_voters()) names.push_back(voter.name());
    STEAD_LOG(logger, Info) << "forming cluster " << absl::StrCat(absl::Hex(bootstrap.cluster_id()))
                            << " with voters " << absl::StrJoin(names, ", ");
    return bootstrap;
  }

  void LearnMembers(const pb::DiscoveryResponse& answer) {
    MutexLock lock(&mu);
    for (const auto* list : {&answer.voters(), &answer.learners()}) {
      for (const pb::MemberInfo& info : *list) {
        if (info.id() != node_id && !members.count(info.id())) members[info.id()] = info;
      }
    }
    if (transport_identity_set) {
      for (const auto& [id, info] : members) AddTransportPeer(info);
    }
  }

  // Opens the volumes as member `bootstrap.node_id` of `bootstrap.cluster_id` and
  // starts Raft. The member that formed the cluster writes the initial entries first.
  absl::Status Activate(const pb::MemberBootstrap& bootstrap) {
    const uint64_t cluster = bootstrap.cluster_id();
    const raft::NodeId id = bootstrap.node_id();
    if (!bootstrap.initial_voters().empty() || IsMemberFilePresent()) {
      // Remember the decision before acting on it, so a restart repeats it exactly.
      STEAD_RETURN_IF_ERROR(server::WriteMemberFile(config.data_dir, bootstrap));
    }
    storage::WalOptions wal_options;
    wal_options.dir = config.wal_dir;
    wal_options.identity = WalIdentity(cluster, id, config.name);
    wal_options.logger = logger.WithContext("part", "wal");
    STEAD_ASSIGN_OR_RETURN(wal, Annotate(storage::Wal::Open(wal_options), "open the WAL"));
    if (config.force_new_cluster == config.name) STEAD_RETURN_IF_ERROR(ForceNewCluster(id));
    if (!bootstrap.initial_voters().empty() && wal->LastIndex() == 0) {
      std::vector<raft::NodeId> voters;
      std::vector<std::string> contexts;
      for (const pb::MemberInfo& voter : bootstrap.initial_voters()) {
        voters.push_back(voter.id());
        contexts.push_back(voter.SerializeAsString());
      }
      storage::WalWrite write;
      write.entries = raft::Raft::BootstrapEntries(voters, contexts);
      pb::HardState hard_state;
      hard_state.set_term(1);
      hard_state.set_commit(voters.size());
      write.hard_state = hard_state;
      STEAD_RETURN_IF_ERROR(Annotate(wal->Write(std::move(write)), "write the initial entries"));
    }

    storage::StateMachineOptions state_options;
    state_options.data_dir = config.data_dir;
    state_options.identity = {cluster, id, config.name};
    state_options.keyspaces = server::KvKeyspaces();
    state_options.keyspaces.push_back(kMembersKeyspace);
    state_options.logger = logger.WithContext("part", "state");
    state_options.memory_limit_bytes = config.memory_limit_bytes;
    STEAD_ASSIGN_OR_RETURN(state,
                           Annotate(storage::StateMachine::Open(state_options), "open the state machine"));
    STEAD_RETURN_IF_ERROR(LoadMembers(bootstrap));
    STEAD_ASSIGN_OR_RETURN(snapshots, Annotate(server::SnapshotStore::Open(
                                                   config.data_dir, logger.WithContext("part", "snapshots")),
                                               "open the checkpoints directory"));
    transport->SetSnapshotSink(snapshots.get());

    transport->SetIdentity(cluster, id);
    {
      MutexLock lock(&mu);
      cluster_id = cluster;
      transport_identity_set = true;
      for (const auto& [peer, info] : members) AddTransportPeer(info);
    }

    const pb::ConfState conf = state->applied().conf_state();
    const bool in_conf = raft::IsVoter(conf, id) || raft::IsLearner(conf, id);
    if (!in_conf && (conf.voters_size() > 0 || conf.learners_size() > 0)) {
      MarkRemoved("its volumes say it was removed from the cluster");
      return absl::OkStatus();
    }
    ever_member = in_conf;

    server::RaftNodeOptions raft_options;
    raft_options.raft.id = id;
    raft_options.raft.election_timeout_ticks = config.election_ticks;
    raft_options.raft.heartbeat_interval_ticks = config.heartbeat_ticks;
    raft_options.raft.random_seed = RandomNonZero();
    raft_options.raft.logger = logger.WithContext("part", "raft");
    raft_options.tick_interval = config.tick_interval;
    raft_options.metrics = raft_metrics;
    raft_options.on_applied = [hub = watches.get()] { hub->Notify(); };
    raft_options.snapshot_entries = static_cast<uint64_t>(config.snapshot_entries);
    raft_options.on_snapshot_installed = [this] { OnSnapshotInstalled(); };
    server::KvApplyOptions apply_options;
    apply_options.history_revisions = config.watch_history_revisions;
    apply_options.history_age = config.watch_history_age;
    raft = std::make_unique<server::RaftNode>(
        io, raft_options, wal.get(), state.get(), transport.get(), snapshots.get(),
        server::MakeKvApplyFunction(apply_options),
        [this](const pb::ConfChange& change, const pb::ConfState& after,
               std::vector<storage::Mutation>* mutations) {
          OnConfChangeApplied(change, after, mutations);
        });
    STEAD_RETURN_IF_ERROR(Annotate(raft->Start(), "start raft"));
    authorizer = std::make_unique<server::Authorizer>(server::AuthorizerOptions(), state.get());
    server::KvServiceOptions kv_options;
    kv_options.authorizer = authorizer.get();
    kv_options.cluster_id = cluster;
    kv_options.max_response_bytes = config.max_response_bytes;
    kv_options.unsafe_local_reads = FailpointEnabled(kFailpointUnsafeLocalReads);
    kv = std::make_unique<server::KvService>(
        kv_options, logger.WithContext("part", "kv"), raft.get(), state.get(),
        [this](raft::NodeId member_id) { return MemberAddressOf(member_id); },
        [this](const pb::ClientRequest& request, absl::Time deadline,
               std::function<void(absl::StatusOr<pb::ClientResponse>)> done) {
          HandleAdmin(request, deadline, std::move(done));
        });
    raft_ptr = raft.get();
    authorizer_ptr = authorizer.get();
    kv_ptr = kv.get();
    watches->Attach(state.get());
    backups->Attach(state.get());
    {
      MutexLock lock(&mu);
      phase = Phase::kRunning;
    }
    STEAD_LOG(logger, Info) << "member " << id << " of cluster " << absl::StrCat(absl::Hex(cluster))
                            << (in_conf ? " is serving" : " waits to be added by the leader");
    return absl::OkStatus();
  }

  bool IsMemberFilePresent() const { return server::MemberFileExists(config.data_dir); }

  // Members recorded in the state machine, plus the initial voters of a new cluster.
  absl::Status LoadMembers(const pb::MemberBootstrap& bootstrap) {
    using Members = std::map<raft::NodeId, pb::MemberInfo>;
    STEAD_ASSIGN_OR_RETURN(Members stored, StoredMembers());
    MutexLock lock(&mu);
    members = std::move(stored);
    for (const pb::MemberInfo& voter : bootstrap.initial_voters()) members[voter.id()] = voter;
    members.erase(node_id);
    return absl::OkStatus();
  }

  // The members the state machine records, by id (this member included).
  absl::StatusOr<std::map<raft::NodeId, pb::MemberInfo>> StoredMembers() const {
    storage::ScanOptions scan;
    scan.keyspace = kMembersKeyspace;
    scan.limit = storage::kMaxScanLimit;
    STEAD_ASSIGN_OR_RETURN(storage::ScanResult stored, state->Scan(scan));
    std::map<raft::NodeId, pb::MemberInfo> found;
    for (const storage::KeyValue& pair : stored.pairs) {
      pb::MemberInfo info;
      if (!info.ParseFromString(pair.value)) {
        return absl::DataLossError(absl::StrCat("member record ", pair.key, " is corrupt"));
      }
      found[info.id()] = info;
    }
    return found;
  }

  // Applier thread: a snapshot from the leader replaced the state machine, and with it
  // the membership records; peers follow them.
  void OnSnapshotInstalled() {
    absl::StatusOr<std::map<raft::NodeId, pb::MemberInfo>> stored = StoredMembers();
    if (!stored.ok()) {
      STEAD_LOG(logger, Error) << "cannot read the members of the installed snapshot: "
                               << stored.status().ToString();
      return;
    }
    stored->erase(node_id);
    MutexLock lock(&mu);
    for (const auto& [id, info] : members) {
      if (!stored->contains(id)) transport->RemovePeer(id);
    }
    members = std::move(stored).value();
    for (const auto& [id, info] : members) AddTransportPeer(info);
  }

  void AddTransportPeer(const pb::MemberInfo& info) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (info.id() == node_id || info.id() == raft::kNoNode) return;
    absl::StatusOr<HostPort> address = ParseAddress(info.peer_address());
    if (!address.ok()) {
      STEAD_LOG(logger, Warning) << "member " << info.name() << " has a bad peer address: "
                                 << address.status().message();
      return;
    }
    transport->SetPeer(info.id(), address->host, address->port);
  }

  // Applier thread: records who the member is, in the same batch as the change.
  void OnConfChangeApplied(const pb::ConfChange& change, const pb::ConfState& after,
                           std::vector<storage::Mutation>* mutations) {
    pb::MemberInfo info;
    const bool has_info = !change.context().empty() && info.ParseFromString(change.context()) &&
                          info.id() == change.node_id();
    MutexLock lock(&mu);
    switch (change.type()) {
      case pb::CONF_CHANGE_TYPE_ADD_LEARNER:
      case pb::CONF_CHANGE_TYPE_ADD_VOTER:
        if (has_info) {
          mutations->push_back(
              storage::Mutation::Put(kMembersKeyspace, MemberKey(info.id()), info.SerializeAsString()));
          if (info.id() != node_id) {
            members[info.id()] = info;
            if (transport_identity_set) AddTransportPeer(info);
          }
        }
        STEAD_LOG(logger, Info) << "member " << change.node_id() << " ("
                                << (has_info ? info.name() : std::string("?")) << ") is now a "
                                << (raft::IsVoter(after, change.node_id()) ? "voter" : "learner");
        break;
      case pb::CONF_CHANGE_TYPE_REMOVE_NODE: {
        mutations->push_back(storage::Mutation::Delete(kMembersKeyspace, MemberKey(change.node_id())));
        auto it = members.find(change.node_id());
        STEAD_LOG(logger, Info) << "member " << change.node_id() << " ("
                                << (it != members.end() ? it->second.name() : config.name)
                                << ") was removed";
        if (change.node_id() != node_id) {
          if (it != members.end()) members.erase(it);
          transport->RemovePeer(change.node_id());
        }
        break;
      }
      default:
        break;
    }
  }

  std::optional<server::MemberAddress> MemberAddressOf(raft::NodeId id) const {
    MutexLock lock(&mu);
    if (id == node_id) {
      return server::MemberAddress{config.name,
                                   HostPort{config.advertise_host, client->port()}.ToString()};
    }
    auto it = members.find(id);
    if (it == members.end()) return std::nullopt;
    return server::MemberAddress{it->second.name(), it->second.client_address()};
  }

  // --- supervisor ------------------------------------------------------------------

  void Supervise(pb::MemberBootstrap bootstrap) {
    if (bootstrap.cluster_id() == 0) {
      std::optional<pb::MemberBootstrap> found = Discover(std::move(bootstrap));
      if (!found) return;  // stopping
      if (absl::Status activated = Activate(*found); !activated.ok()) {
        Fail(activated);
        return;
      }
    }
    absl::Time next_join = absl::InfinitePast();
    absl::Time leaderless_since = absl::InfiniteFuture();
    while (!stopping) {
      Phase current;
      {
        MutexLock lock(&mu);
        current = phase;
      }
      if (current != Phase::kRunning) {
        SleepFor(kSupervisorPeriod);
        continue;
      }
      const server::RaftNodeStatus status = raft->Status();
      if (!status.fatal.ok()) {
        Fail(status.fatal);
        continue;
      }
      const bool in_conf = raft::IsVoter(status.conf_state, status.id) ||
                           raft::IsLearner(status.conf_state, status.id);
      const bool conf_known = status.conf_state.voters_size() > 0;
      if (status.leader != raft::kNoNode) leaderless_since = absl::InfiniteFuture();
      if (in_conf) {
        ever_member = true;
        // A member removed while it was cut off never receives its removal: the
        // others stop replicating to it. Without a leader for a while, it asks.
        leaderless_since = std::min(leaderless_since, absl::Now());
        if (status.leader == raft::kNoNode && absl::Now() - leaderless_since > kLeaderlessCheckAfter &&
            absl::Now() >= next_join) {
          next_join = absl::Now() + kJoinRetryPeriod;
          if (LeaderSaysRemoved()) {
            MarkRemoved("the leader's configuration no longer lists it");
            continue;
          }
        }
      } else if (ever_member && conf_known) {
        MarkRemoved("the cluster removed it");
        continue;
      } else if (absl::Now() >= next_join) {
        next_join = absl::Now() + kJoinRetryPeriod;
        AskToJoin();
      }
      CheckForStaleVolumes(status);
      {
        MutexLock lock(&mu);
        contacts.Observe(status, absl::Now());
      }
      if (status.role == raft::Role::kLeader) MaintainMembership(status);
      SleepFor(kSupervisorPeriod);
    }
  }

  // Until the leader's log reaches this member: asks to be added (a member already in
  // the configuration is told so, and simply waits for the log).
  void AskToJoin() {
    pb::DiscoveryRequest request;
    request.set_protocol_version(server::kDiscoveryProtocolVersion);
    *request.mutable_from() = SelfInfo();
    request.set_join(true);
    std::vector<HostPort> targets;
    {
      MutexLock lock(&mu);
      if (!join_hint.empty()) {
        if (absl::StatusOr<HostPort> hint = ParseAddress(join_hint); hint.ok()) targets.push_back(*hint);
      }
      for (const auto& [id, info] : members) {
        if (absl::StatusOr<HostPort> address = ParseAddress(info.peer_address()); address.ok()) {
          targets.push_back(*address);
        }
      }
    }
    for (const auto& [name, address] : SeedPeers()) targets.push_back(address);
    for (const HostPort& target : targets) {
      if (stopping) return;
      absl::StatusOr<pb::DiscoveryResponse> answer =
          server::AskPeer(target, request, kDiscoveryTimeout, peer_tls_client);
      if (!answer.ok()) continue;
      uint64_t expected_cluster;
      {
        MutexLock lock(&mu);
        expected_cluster = cluster_id;
      }
      if (answer->cluster_id() != expected_cluster) continue;
      LearnMembers(*answer);
      if (answer->join_code() == 0) {
        STEAD_LOG(logger, Info) << "the leader " << answer->responder().name()
                                << " accepted this member: " << answer->join_message();
        MutexLock lock(&mu);
        join_hint = answer->responder().peer_address();
        join_refusal.clear();
        return;
      }
      if (answer->join_code() == static_cast<int32_t>(absl::StatusCode::kFailedPrecondition)) {
        // Refused for a reason the operator must resolve (a member of this name runs).
        MutexLock lock(&mu);
        if (join_refusal.empty()) {
          STEAD_LOG(logger, Error) << "the leader " << answer->responder().name()
                                   << " refuses this member: " << answer->join_message();
        }
        join_refusal = answer->join_message();
        return;
      }
      if (answer->leader().id() != raft::kNoNode) {
        MutexLock lock(&mu);
        join_hint = answer->leader().peer_address();
      }
      STEAD_LOG(logger, Debug) << "join not accepted by " << answer->responder().name() << ": "
                               << answer->join_message();
    }
  }

  // Asks the known members who leads; true if the leader itself answers and its
  // configuration does not list this member.
  bool LeaderSaysRemoved() {
    pb::DiscoveryRequest request;
    request.set_protocol_version(server::kDiscoveryProtocolVersion);
    *request.mutable_from() = SelfInfo();
    std::vector<HostPort> targets;
    uint64_t expected_cluster;
    raft::NodeId self;
    {
      MutexLock lock(&mu);
      expected_cluster = cluster_id;
      self = node_id;
      for (const auto& [id, info] : members) {
        if (absl::StatusOr<HostPort> address = ParseAddress(info.peer_address()); address.ok()) {
          targets.push_back(*address);
        }
      }
    }
    for (const HostPort& target : targets) {
      if (stopping) return false;
      absl::StatusOr<pb::DiscoveryResponse> answer =
          server::AskPeer(target, request, kDiscoveryTimeout, peer_tls_client);
      if (!answer.ok() || answer->cluster_id() != expected_cluster ||
          answer->leader().id() == raft::kNoNode ||
          answer->leader().id() != answer->responder().id()) {
        continue;
      }
      for (const auto* list : {&answer->voters(), &answer->learners()}) {
        for (const pb::MemberInfo& info : *list) {
          if (info.id() == self) return false;
        }
      }
      return true;
    }
    return false;
  }

  // Leader: promotes caught-up learners, one change at a time (unless
  // --promote-learners=manual leaves that to `steadctl member promote`).
  void MaintainMembership(const server::RaftNodeStatus& status) {
    if (change_in_flight || !config.auto_promote_learners) return;
    for (const raft::PeerStatus& peer : status.peers) {
      if (!peer.is_learner || !server::IsCaughtUp(peer, status.last_index)) continue;
      STEAD_LOG(logger, Info) << "promoting learner " << peer.id << " (match " << peer.match
                              << " of " << status.last_index << ")";
      ProposeChange(PromotionOf(peer.id), "promote", absl::Now() + absl::Seconds(10));
      return;
    }
  }

  // The change that makes learner `id` a voter, with its member record as context.
  pb::ConfChange PromotionOf(raft::NodeId id) const {
    pb::ConfChange change;
    change.set_type(pb::CONF_CHANGE_TYPE_ADD_VOTER);
    change.set_node_id(id);
    MutexLock lock(&mu);
    auto it = members.find(id);
    if (it != members.end()) change.set_context(it->second.SerializeAsString());
    return change;
  }

  void ProposeChange(const pb::ConfChange& change, const std::string& what, absl::Time deadline,
                     std::function<void(absl::Status)> then = nullptr) {
    change_in_flight = true;
    raft->ProposeConfChange(
        change, deadline,
        [this, what, node = change.node_id(),
         then = std::move(then)](absl::StatusOr<std::string> result) {
          change_in_flight = false;
          if (!result.ok()) {
            STEAD_LOG(logger, Info) << what << " of member " << node
                                    << " did not go through: " << result.status().message();
          }
          if (then) then(result.status());
        });
  }

  // --- discovery answers (io threads; quick, never blocking) ------------------------

  pb::DiscoveryResponse AnswerDiscovery(const pb::DiscoveryRequest& request) {
    pb::DiscoveryResponse answer;
    answer.set_join_code(static_cast<int32_t>(absl::StatusCode::kUnavailable));
    *answer.mutable_responder() = SelfInfo();
    server::RaftNode* node = raft_ptr.load();
    {
      MutexLock lock(&mu);
      answer.set_cluster_id(cluster_id);
    }
    if (node == nullptr) {
      answer.set_join_message("this member is not serving yet");
      return answer;
    }
    const server::RaftNodeStatus status = node->Status();
    {
      MutexLock lock(&mu);
      auto info_of = [&](raft::NodeId id) {
        if (id == node_id) return SelfInfoLocked();
        auto it = members.find(id);
        if (it != members.end()) return it->second;
        pb::MemberInfo unknown;
        unknown.set_id(id);
        return unknown;
      };
      for (uint64_t id : status.conf_state.voters()) *answer.add_voters() = info_of(id);
      for (uint64_t id : status.conf_state.learners()) *answer.add_learners() = info_of(id);
      if (status.leader != raft::kNoNode) *answer.mutable_leader() = info_of(status.leader);
    }
    if (!request.join()) {
      answer.set_join_code(0);
      return answer;
    }
    const pb::MemberInfo& asker = request.from();
    if (raft::IsVoter(status.conf_state, asker.id()) || raft::IsLearner(status.conf_state, asker.id())) {
      answer.set_join_code(0);
      answer.set_join_message("already a member; the log will reach it");
      return answer;
    }
    if (status.role != raft::Role::kLeader) {
      answer.set_join_message("not the leader");
      return answer;
    }
    if (asker.id() == raft::kNoNode || asker.name().empty() || !ParseAddress(asker.peer_address()).ok()) {
      answer.set_join_code(static_cast<int32_t>(absl::StatusCode::kInvalidArgument));
      answer.set_join_message("join request without id, name or peer address");
      return answer;
    }
    if (change_in_flight) {
      answer.set_join_message("another membership change is in progress; retry");
      return answer;
    }
    // The same name under another id is an earlier life of the asker (its volumes
    // were lost), or a second process started under a running member's name by
    // mistake. Only an earlier life falls silent: once it has, its id must never vote
    // again, so it goes first.
    raft::NodeId previous = raft::kNoNode;
    absl::Duration previous_silent_for;
    {
      MutexLock lock(&mu);
      for (const auto& [id, info] : members) {
        if (info.name() == asker.name() && id != asker.id() &&
            (raft::IsVoter(status.conf_state, id) || raft::IsLearner(status.conf_state, id))) {
          previous = id;
        }
      }
      previous_silent_for = contacts.SilentFor(previous, absl::Now());
    }
    pb::ConfChange change;
    if (previous != raft::kNoNode) {
      if (absl::Status replaceable = server::CheckReplacement(
              asker.name(), previous, previous_silent_for, config.replace_silent_member_after);
          !replaceable.ok()) {
        bool first_refusal;
        {
          MutexLock lock(&mu);
          if (refused_joiners.size() >= kMaxRememberedRefusals) refused_joiners.clear();
          first_refusal = refused_joiners.insert(asker.id()).second;
        }
        if (first_refusal) {
          STEAD_LOG(logger, Warning) << "refusing node " << absl::StrCat(absl::Hex(asker.id())) << " at "
                                     << asker.peer_address() << ": " << replaceable.message();
        }
        answer.set_join_code(static_cast<int32_t>(replaceable.code()));
        answer.set_join_message(std::string(replaceable.message()));
        return answer;
      }
      change.set_type(pb::CONF_CHANGE_TYPE_REMOVE_NODE);
      change.set_node_id(previous);
      STEAD_LOG(logger, Info) << asker.name() << " came back as node " << asker.id()
                              << ": removing its earlier id " << previous << " first";
      ProposeChange(change, "removal of the earlier id", absl::Now() + absl::Seconds(10));
      answer.set_join_message("removing this member's earlier id first; retry");
      return answer;
    }
    change.set_type(pb::CONF_CHANGE_TYPE_ADD_LEARNER);
    change.set_node_id(asker.id());
    change.set_context(asker.SerializeAsString());
    STEAD_LOG(logger, Info) << "adding " << asker.name() << " (node " << asker.id()
                            << ") as a learner";
    ProposeChange(change, "addition", absl::Now() + absl::Seconds(10));
    answer.set_join_code(0);
    answer.set_join_message("adding it as a learner");
    return answer;
  }

  pb::MemberInfo SelfInfoLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    pb::MemberInfo info;
    info.set_id(node_id);
    info.set_name(config.name);
    info.set_peer_address(HostPort{config.advertise_host, transport->listen_port()}.ToString());
    info.set_client_address(HostPort{config.advertise_host, client->port()}.ToString());
    return info;
  }

  // --- requests --------------------------------------------------------------------

  void HandleRequest(pb::ClientRequest request, server::ResponseCallback done) {
    server::KvService* service = kv_ptr.load();
    const std::string stale = StaleVolumes();
    if (service == nullptr || draining || !stale.empty()) {
      pb::ClientResponse response;
      response.set_request_id(request.request_id());
      // Unavailable even when stale: clients move on to a member that can serve them.
      response.mutable_error()->set_code(static_cast<int32_t>(absl::StatusCode::kUnavailable));
      response.mutable_error()->set_message(!stale.empty() ? stale
                                            : draining     ? "this member is shutting down"
                                                           : "this member is not serving yet");
      done(std::move(response));
      return;
    }
    requests_total->Increment();
    in_flight.fetch_add(1);
    ResponseCallback finish = [this, done = std::move(done)](pb::ClientResponse response) {
      done(std::move(response));
      in_flight.fetch_sub(1);
    };
    if (std::optional<std::string> leader = LeaderToForwardTo(request)) {
      return ForwardToLeader(*leader, std::move(request), std::move(finish));
    }
    if (request.has_range() && request.range().consistency() != pb::READ_CONSISTENCY_SERIALIZABLE &&
        !request.forwarded()) {
      // A linearizable read is served here, also on a follower (its read barrier asks
      // the leader for the read index, then waits for the local state machine). When
      // this member cannot serve it (UNAVAILABLE: it knows no leader, its state is
      // damaged or not yet verified), the leader may, if this member knows one now.
      finish = [this, retry = request, finish = std::move(finish)](
                   pb::ClientResponse response) mutable {
        if (response.has_error() &&
            response.error().code() == static_cast<int32_t>(absl::StatusCode::kUnavailable)) {
          if (std::optional<std::string> leader = LeaderClientAddress()) {
            return ForwardToLeader(*leader, std::move(retry), std::move(finish));
          }
        }
        finish(std::move(response));
      };
    }
    service->Handle(std::move(request), std::move(finish));
  }

  void ForwardToLeader(const std::string& leader, pb::ClientRequest request,
                       ResponseCallback finish) {
    forwarded_total->Increment();
    const absl::Duration timeout =
        request.timeout_ms() == 0 ? absl::Seconds(5) : absl::Milliseconds(request.timeout_ms());
    forwarder->Forward(leader, std::move(request), absl::Now() + std::min(timeout, absl::Seconds(60)),
                       std::move(finish));
  }

  // The leader's client address when `request` must be served by the leader (writes and
  // membership calls; linearizable reads are served by every member), this member is
  // not it, and it knows who is; nullopt to serve it here.
  std::optional<std::string> LeaderToForwardTo(const pb::ClientRequest& request) const {
    if (request.forwarded()) return std::nullopt;  // one hop at most
    const bool needs_leader =
        request.has_put() || request.has_delete_range() || request.has_txn() ||
        (request.has_auth() && server::IsAuthChange(request.auth())) ||
        request.has_member_remove() || request.has_member_promote() ||
        request.has_leader_transfer();
    if (!needs_leader) return std::nullopt;
    return LeaderClientAddress();
  }

  // The leader's client address when this member is not the leader and knows who is.
  std::optional<std::string> LeaderClientAddress() const {
    server::RaftNode* node = raft_ptr.load();
    if (node == nullptr) return std::nullopt;
    const server::RaftNodeStatus status = node->Status();
    if (status.role == raft::Role::kLeader || status.leader == raft::kNoNode) return std::nullopt;
    std::optional<server::MemberAddress> leader = MemberAddressOf(status.leader);
    if (!leader || leader->client_address.empty()) return std::nullopt;
    return leader->client_address;
  }

  // Waits for the response of a request made without a socket.
  absl::StatusOr<pb::ClientResponse> Call(pb::ClientRequest request, absl::Duration timeout) {
    request.set_timeout_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(timeout)));
    // The embedded API is trusted; a request it makes that is forwarded goes as root.
    if (const server::Authorizer* auth = authorizer_ptr.load(); auth != nullptr) {
      STEAD_RETURN_IF_ERROR(auth->AttachRootToken(&request));
    }
    auto promise = std::make_shared<std::promise<pb::ClientResponse>>();
    std::future<pb::ClientResponse> future = promise->get_future();
    HandleRequest(std::move(request),
                  [promise](pb::ClientResponse response) { promise->set_value(std::move(response)); });
    // The service answers every request by its deadline; the margin covers scheduling.
    if (future.wait_for(absl::ToChronoNanoseconds(timeout + absl::Seconds(1))) !=
        std::future_status::ready) {
      return absl::DeadlineExceededError("no answer in time");
    }
    pb::ClientResponse response = future.get();
    if (response.has_error()) {
      std::string message = response.error().message();
      if (!response.error().leader_name().empty()) {
        absl::StrAppend(&message, " (leader: ", response.error().leader_name(), ")");
      }
      return absl::Status(static_cast<absl::StatusCode>(response.error().code()), message);
    }
    return response;
  }

  // --- membership calls from the client port ------------------------------------------

  // Serves what KvService passes on: member_list, member_remove, member_promote and
  // leader_transfer (a follower forwarded the last three to the leader when it knew it),
  // and hash (never forwarded: the hash of this member's state).
  void HandleAdmin(const pb::ClientRequest& request, absl::Time deadline, AdminDone done) {
    switch (request.request_case()) {
      case pb::ClientRequest::kMemberList: {
        pb::ClientResponse response;
        *response.mutable_member_list()->mutable_members() = MemberList();
        return done(std::move(response));
      }
      case pb::ClientRequest::kMemberRemove:
        return RemoveMember(request.member_remove(), deadline, std::move(done));
      case pb::ClientRequest::kMemberPromote:
        return PromoteMember(request.member_promote(), deadline, std::move(done));
      case pb::ClientRequest::kLeaderTransfer:
        return TransferLeadership(request.leader_transfer(), deadline, std::move(done));
      case pb::ClientRequest::kHash:
        return backups->Hash(deadline, std::move(done));  // this member's own state
      default:
        return done(absl::InvalidArgumentError("not a membership request"));
    }
  }

  // Every known member's name by id, this one's included.
  std::map<raft::NodeId, std::string> MemberNames() const {
    MutexLock lock(&mu);
    std::map<raft::NodeId, std::string> names;
    for (const auto& [id, info] : members) names[id] = info.name();
    names[node_id] = config.name;
    return names;
  }

  std::string NameOf(raft::NodeId id) const {
    std::optional<server::MemberAddress> address = MemberAddressOf(id);
    return address && !address->name.empty() ? address->name : absl::StrCat("member ", id);
  }

  void RemoveMember(const pb::MemberRemoveRequest& remove, absl::Time deadline, AdminDone done) {
    const server::RaftNodeStatus status = raft->Status();
    absl::StatusOr<raft::NodeId> target =
        server::ResolveMember(remove.id(), remove.name(), MemberNames(), status.conf_state);
    if (!target.ok()) return done(target.status());
    if (status.role != raft::Role::kLeader) return done(absl::UnavailableError("not the leader"));
    pb::ConfChange change;
    change.set_type(pb::CONF_CHANGE_TYPE_REMOVE_NODE);
    change.set_node_id(*target);
    ProposeChange(change, "removal", deadline,
                  [this, change, done = std::move(done)](absl::Status result) {
                    if (!result.ok()) return done(result);
                    pb::ClientResponse response;
                    *response.mutable_member_remove()->mutable_members() = MemberList(&change);
                    done(std::move(response));
                  });
  }

  // A voter already is answered at once (OK, already_voter), so that a script may
  // promote whatever it finds a learner even if the leader promotes it first.
  void PromoteMember(const pb::MemberPromoteRequest& promote, absl::Time deadline, AdminDone done) {
    const server::RaftNodeStatus status = raft->Status();
    absl::StatusOr<raft::NodeId> target =
        server::ResolveMember(promote.id(), promote.name(), MemberNames(), status.conf_state);
    if (!target.ok()) return done(target.status());
    const pb::ConfChange change = PromotionOf(*target);
    auto answer = [this, change](bool already_voter) {
      pb::ClientResponse response;
      *response.mutable_member_promote()->mutable_members() = MemberList(&change);
      response.mutable_member_promote()->set_already_voter(already_voter);
      return response;
    };
    if (raft::IsVoter(status.conf_state, *target)) return done(answer(true));
    if (status.role != raft::Role::kLeader) return done(absl::UnavailableError("not the leader"));
    const std::string name = NameOf(*target);
    if (absl::Status ready = server::CheckPromotion(status, *target, name); !ready.ok()) {
      return done(ready);
    }
    if (change_in_flight) {
      return done(absl::UnavailableError("another membership change is in progress; retry"));
    }
    STEAD_LOG(logger, Info) << "promoting learner " << name << " on request";
    ProposeChange(change, "promotion", deadline,
                  [this, answer, id = *target, done = std::move(done)](absl::Status result) {
                    // The leader's own promotion may have come first: a voter all the same.
                    server::RaftNode* node = raft_ptr.load();
                    const bool voter =
                        node != nullptr && raft::IsVoter(node->Status().conf_state, id);
                    if (!result.ok() && !voter) return done(result);
                    done(answer(!result.ok()));
                  });
  }

  // A leadership transfer asked for by a client, until this member sees the new leader.
  struct TransferWait {
    TransferWait(asio::io_context& io, raft::NodeId from_id, raft::NodeId to_id,
                 absl::Time deadline_in, AdminDone done_in)
        : timer(io), from(from_id), to(to_id), deadline(deadline_in), done(std::move(done_in)) {}
    asio::steady_timer timer;
    const raft::NodeId from;
    const raft::NodeId to;
    const absl::Time deadline;
    absl::Time next_attempt = absl::InfinitePast();
    AdminDone done;
  };

  void TransferLeadership(const pb::LeaderTransferRequest& transfer, absl::Time deadline,
                          AdminDone done) {
    const server::RaftNodeStatus status = raft->Status();
    raft::NodeId target = raft::kNoNode;
    if (transfer.id() != raft::kNoNode || !transfer.name().empty()) {
      absl::StatusOr<raft::NodeId> named =
          server::ResolveMember(transfer.id(), transfer.name(), MemberNames(), status.conf_state);
      if (!named.ok()) return done(named.status());
      target = *named;
    }
    if (status.role != raft::Role::kLeader) return done(absl::UnavailableError("not the leader"));
    if (target == status.id) return done(TransferAnswer(status.id, status.id));
    if (target == raft::kNoNode) {
      target = server::MostCaughtUpVoter(status);
      if (target == raft::kNoNode) {
        return done(absl::FailedPreconditionError(
            "no other voter has answered the leader recently: no one can take over"));
      }
    } else if (absl::Status able = server::CheckTransferTarget(status, target, NameOf(target));
               !able.ok()) {
      return done(able);
    }
    STEAD_LOG(logger, Info) << "handing leadership to " << NameOf(target) << " on request";
    PollTransfer(std::make_shared<TransferWait>(io, status.id, target, deadline, std::move(done)));
  }

  // Asks the core to hand over (again after each abandoned attempt) and looks every
  // 10 ms whom this member follows, until it is the target or the deadline passes.
  // Runs on the io threads and never blocks.
  void PollTransfer(std::shared_ptr<TransferWait> wait) {
    server::RaftNode* node = raft_ptr.load();
    if (node == nullptr) return wait->done(absl::UnavailableError("this member is stopping"));
    const server::RaftNodeStatus status = node->Status();
    if (status.leader == wait->to) return wait->done(TransferAnswer(wait->from, wait->to));
    if (status.leader != raft::kNoNode && status.leader != wait->from) {
      // Another voter won the election the transfer started. Unavailable carries its
      // hint, so a client retries there and that leader hands over in turn.
      return wait->done(absl::UnavailableError(
          absl::StrCat(NameOf(status.leader), " took over instead of ", NameOf(wait->to))));
    }
    const absl::Time now = absl::Now();
    if (now >= wait->deadline) {
      return wait->done(absl::DeadlineExceededError(absl::StrCat(
          "leadership was not handed to ", NameOf(wait->to), " in time; ",
          status.role == raft::Role::kLeader ? "this member still leads" : "no leader yet")));
    }
    if (status.role == raft::Role::kLeader && now >= wait->next_attempt) {
      // The core abandons a transfer after an election timeout; ask again after two.
      node->TransferLeadership(wait->to);
      wait->next_attempt = now + config.tick_interval * (config.election_ticks * 2);
    }
    wait->timer.expires_after(std::chrono::milliseconds(10));
    wait->timer.async_wait([this, wait](boost::system::error_code ec) {
      if (ec) return wait->done(absl::UnavailableError("this member is stopping"));
      PollTransfer(wait);
    });
  }

  pb::ClientResponse TransferAnswer(raft::NodeId from, raft::NodeId to) const {
    server::RaftNodeStatus status;
    if (server::RaftNode* node = raft_ptr.load()) status = node->Status();
    pb::ClientResponse response;
    MutexLock lock(&mu);
    *response.mutable_leader_transfer()->mutable_previous_leader() =
        MemberEntryLocked(status, from);
    *response.mutable_leader_transfer()->mutable_leader() = MemberEntryLocked(status, to);
    return response;
  }

  // Member `id` as the admin calls report it, from this member's `status`.
  pb::Member MemberEntryLocked(const server::RaftNodeStatus& status, raft::NodeId id) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const pb::MemberInfo info = id == node_id       ? SelfInfoLocked()
                                : members.count(id) ? members.at(id)
                                                    : pb::MemberInfo();
    pb::Member entry;
    entry.set_id(id);
    entry.set_name(info.name());
    entry.set_peer_address(info.peer_address());
    entry.set_client_address(info.client_address());
    entry.set_is_learner(raft::IsLearner(status.conf_state, id));
    entry.set_is_leader(id == status.leader);
    if (const raft::PeerStatus* peer = server::FindPeer(status, id)) {
      entry.set_match_index(peer->match);
    }
    return entry;
  }

  // The members as this member's status shows them. `applied`, a change known to be
  // applied here, is shown even when the published status does not reflect it yet: the
  // applier completes a change's waiter before the raft strand publishes again.
  google::protobuf::RepeatedPtrField<pb::Member> MemberList(
      const pb::ConfChange* applied = nullptr) const {
    google::protobuf::RepeatedPtrField<pb::Member> list;
    server::RaftNode* node = raft_ptr.load();
    if (node == nullptr) return list;
    server::RaftNodeStatus status = node->Status();
    if (applied != nullptr && raft::ValidateConfChange(status.conf_state, *applied).ok()) {
      status.conf_state = raft::ApplyConfChange(status.conf_state, *applied);
    }
    MutexLock lock(&mu);
    for (uint64_t id : status.conf_state.voters()) *list.Add() = MemberEntryLocked(status, id);
    for (uint64_t id : status.conf_state.learners()) *list.Add() = MemberEntryLocked(status, id);
    return list;
  }

  // --- health ----------------------------------------------------------------------

  NodeStatus GetStatus() const {
    NodeStatus out;
    out.name = config.name;
    out.client_port = client ? client->port() : 0;
    out.peer_port = transport ? transport->listen_port() : 0;
    out.http_port = http ? http->port() : 0;
    Phase current;
    {
      MutexLock lock(&mu);
      out.cluster_id = cluster_id;
      out.node_id = node_id;
      current = phase;
      if (phase == Phase::kFailed) {
        out.healthy = false;
        out.unhealthy_reason = failure;
      }
    }
    server::RaftNode* node = raft_ptr.load();
    server::RaftNodeStatus status;
    if (node != nullptr) {
      status = node->Status();
      out.term = status.term;
      out.commit_index = status.commit;
      out.applied_index = status.applied;
      out.leader_id = status.leader;
      out.voter = status.is_voter;
      if (std::optional<server::MemberAddress> leader = MemberAddressOf(status.leader)) {
        out.leader_name = leader->name;
      }
      if (!status.fatal.ok()) {
        out.healthy = false;
        out.unhealthy_reason = std::string(status.fatal.message());
      }
    }
    switch (current) {
      case Phase::kDiscovering:
        out.state = "discovering";
        out.not_ready_reason = "looking for the cluster";
        return out;
      case Phase::kRemoved:
        out.state = "removed";
        out.not_ready_reason = "removed from the cluster";
        return out;
      case Phase::kFailed:
        out.state = "failed";
        out.not_ready_reason = out.unhealthy_reason;
        return out;
      case Phase::kStopped:
        out.state = "stopped";
        out.not_ready_reason = "stopped";
        return out;
      case Phase::kRunning:
        break;
    }
    const bool in_conf = raft::IsVoter(status.conf_state, status.id) ||
                         raft::IsLearner(status.conf_state, status.id);
    if (!in_conf) {
      out.state = "joining";
    } else if (!status.is_voter) {
      out.state = "learner";
    } else {
      out.state = std::string(raft::RoleName(status.role));
    }
    if (!out.healthy) {
      out.not_ready_reason = out.unhealthy_reason;
    } else if (!status.state_damage.ok()) {
      out.not_ready_reason = std::string(status.state_damage.message());
    } else if (!status.state_verified) {
      out.not_ready_reason = "verifying the state machine's checksums after the start";
    } else if (status.snapshot_offered > status.applied) {
      // Its own state is older than the log the leader still has: it serves nothing
      // current until the snapshot is installed.
      out.not_ready_reason = absl::StrCat("waiting for the leader's snapshot at index ",
                                          status.snapshot_offered, " (applied ", status.applied, ")");
    } else if (draining) {
      out.not_ready_reason = "shutting down";
    } else if (!status.is_voter) {
      MutexLock lock(&mu);
      out.not_ready_reason = in_conf                ? "a learner, catching up"
                             : join_refusal.empty() ? "waiting to be added"
                                                    : join_refusal;
    } else if (std::string stale = StaleVolumes(); !stale.empty()) {
      out.not_ready_reason = std::move(stale);
    } else if (status.leader == raft::kNoNode) {
      out.not_ready_reason = "no leader known";
    } else if (const raft::Index commit = std::max(status.commit, status.leader_commit);
               status.applied + kReadyApplyLag < commit) {
      // The leader's commit counts: a member whose log lags far cannot commit (nor
      // apply) what it lacks, and would otherwise look caught up.
      out.not_ready_reason = absl::StrCat("applied ", status.applied, " trails commit ", commit);
    } else {
      out.ready = true;
    }
    return out;
  }

  server::HttpResponse Healthz() const {
    const NodeStatus status = GetStatus();
    server::HttpResponse response;
    response.status = status.healthy ? 200 : 503;
    response.body = status.healthy ? "ok\n" : absl::StrCat(status.unhealthy_reason, "\n");
    return response;
  }

  server::HttpResponse Readyz() const {
    const NodeStatus status = GetStatus();
    server::HttpResponse response;
    response.status = status.ready ? 200 : 503;
    response.body = status.ready ? "ready\n" : absl::StrCat("not ready: ", status.not_ready_reason, "\n");
    return response;
  }

  void RegisterMetrics() {
    auto gauge = [this](const char* name, const char* help, auto read) {
      metrics.AddGaugeFunction(name, help, [this, read]() -> double {
        server::RaftNode* node = raft_ptr.load();
        return node == nullptr ? 0.0 : static_cast<double>(read(node->Status()));
      });
    };
    using S = server::RaftNodeStatus;
    gauge("stead_raft_term", "Current Raft term.", [](const S& s) { return s.term; });
    gauge("stead_raft_is_leader", "1 if this member is the leader.",
          [](const S& s) { return s.role == raft::Role::kLeader ? 1 : 0; });
    gauge("stead_raft_is_voter", "1 if this member is a voter.", [](const S& s) { return s.is_voter; });
    gauge("stead_raft_commit_index", "Highest log index known committed.", [](const S& s) { return s.commit; });
    gauge("stead_raft_applied_index", "Highest log index applied to the state machine.",
          [](const S& s) { return s.applied; });
    gauge("stead_raft_last_index", "Last index of this member's log.", [](const S& s) { return s.last_index; });
    gauge("stead_raft_leader_changes", "Leader changes seen since start.",
          [](const S& s) { return s.leader_changes; });
    gauge("stead_raft_reads", "Linearizable reads confirmed (ReadIndex) here since start, as "
          "leader or follower.", [](const S& s) { return s.reads; });
    gauge("stead_raft_read_rounds", "ReadIndex rounds those reads shared (a heartbeat round on "
          "the leader, one request to the leader on a follower).",
          [](const S& s) { return s.read_rounds; });
    metrics.AddGaugeFunction("stead_ready", "1 if /readyz answers 200.",
                             [this] { return GetStatus().ready ? 1.0 : 0.0; });
    metrics.AddGaugeFunction("stead_peers_connected", "Peers with an open outgoing connection.", [this] {
      if (!transport) return 0.0;
      double connected = 0;
      for (const auto& [id, peer] : transport->Peers()) connected += peer.connected ? 1 : 0;
      return connected;
    });
    metrics.AddGaugeFunction("stead_peer_messages_dropped", "Raft messages dropped (queue full or "
                             "connection lost) since start.", [this] {
      if (!transport) return 0.0;
      double dropped = 0;
      for (const auto& [id, peer] : transport->Peers()) dropped += static_cast<double>(peer.messages_dropped);
      return dropped;
    });
    requests_total = metrics.AddCounter("stead_client_requests_total", "Client requests received.");
    forwarded_total = metrics.AddCounter("stead_client_requests_forwarded_total",
                                         "Client requests passed on to the leader.");
    raft_metrics.proposals = metrics.AddCounter("stead_proposals_total", "Commands proposed.");
    raft_metrics.proposals_failed =
        metrics.AddCounter("stead_proposals_failed_total", "Proposals that failed or timed out.");
    raft_metrics.wal_write_seconds = metrics.AddHistogram(
        "stead_wal_write_seconds", "Time from handing a Ready to the WAL to its fsync.",
        server::Histogram::LatencyBuckets());
    raft_metrics.apply_seconds = metrics.AddHistogram(
        "stead_apply_seconds", "Time to apply one batch of committed entries.",
        server::Histogram::LatencyBuckets());
    gauge("stead_snapshots_taken", "Checkpoints taken for log compaction since start.",
          [](const S& s) { return s.snapshots_taken; });
    gauge("stead_snapshots_installed", "Raft snapshots from a leader installed since start.",
          [](const S& s) { return s.snapshots_installed; });
    gauge("stead_raft_log_first_index", "First index the WAL holds; earlier ones are compacted.",
          [](const S& s) { return s.log_first_index; });
    // The state machine exists once the raft node does (set after it, and HTTP stops
    // before it closes).
    const auto memory = [this](const char* name, const char* help,
                               uint64_t storage::StateMachine::MemoryUsage::*field) {
      metrics.AddGaugeFunction(name, help, [this, field] {
        if (raft_ptr.load() == nullptr) return 0.0;
        return static_cast<double>(state->memory_usage().*field);
      });
    };
    memory("stead_rocksdb_memtable_bytes", "Bytes in the state machine's memtables.",
           &storage::StateMachine::MemoryUsage::memtable_bytes);
    memory("stead_rocksdb_block_cache_bytes",
           "Bytes in RocksDB's block cache (memtables included under --memory-limit).",
           &storage::StateMachine::MemoryUsage::block_cache_bytes);
    const auto transfers = [this](const std::string& name, const std::string& help,
                                  uint64_t server::SnapshotTransferStats::*field) {
      metrics.AddGaugeFunction(name, help, [this, field] {
        return transport ? static_cast<double>(transport->SnapshotStats().*field) : 0.0;
      });
    };
    transfers("stead_snapshot_sends_started", "Raft snapshot transfers started to followers.",
              &server::SnapshotTransferStats::sends_started);
    transfers("stead_snapshot_sends_completed", "Raft snapshot transfers a follower accepted.",
              &server::SnapshotTransferStats::sends_completed);
    transfers("stead_snapshot_sends_failed", "Raft snapshot transfers that failed (retried).",
              &server::SnapshotTransferStats::sends_failed);
    transfers("stead_snapshot_bytes_sent", "Checkpoint bytes streamed to followers.",
              &server::SnapshotTransferStats::bytes_sent);
    transfers("stead_snapshot_receives_completed", "Raft snapshot transfers received and verified.",
              &server::SnapshotTransferStats::receives_completed);
    transfers("stead_snapshot_receives_resumed", "Transfers that resumed a partial one.",
              &server::SnapshotTransferStats::receives_resumed);
    transfers("stead_snapshot_bytes_received", "Checkpoint bytes received from leaders.",
              &server::SnapshotTransferStats::bytes_received);
  }

  // --- stopping --------------------------------------------------------------------

  void MarkRemoved(const std::string& why) {
    STEAD_LOG(logger, Warning) << "this member is no longer part of the cluster (" << why
                               << "); it stays idle. To make it a member again, wipe its data and "
                                  "WAL volumes and restart it: it joins under a new id";
    server::RaftNode* node = raft_ptr.exchange(nullptr);
    kv_ptr = nullptr;
    if (node != nullptr) node->Stop();
    MutexLock lock(&mu);
    phase = Phase::kRemoved;
  }

  void Fail(const absl::Status& status) {
    STEAD_LOG(logger, Error) << "this member cannot continue: " << status.ToString();
    MutexLock lock(&mu);
    phase = Phase::kFailed;
    failure = std::string(status.message());
  }

  void SleepFor(absl::Duration duration) {
    MutexLock lock(&mu);
    const absl::Time until = absl::Now() + duration;
    while (!stopping && absl::Now() < until) wake.WaitWithTimeout(&mu, until - absl::Now());
  }

  absl::Status Shutdown() {
    if (shutdown_started.exchange(true)) return absl::OkStatus();
    const absl::Time deadline = absl::Now() + config.shutdown_timeout;
    STEAD_LOG(logger, Info) << "shutting down within " << absl::FormatDuration(config.shutdown_timeout);
    draining = true;
    absl::Status result;
    if (server::RaftNode* node = raft_ptr.load()) {
      // Requests in flight finish (or reach their deadline) first.
      const absl::Time drain_until = std::min(deadline, absl::Now() + absl::Seconds(5));
      while (in_flight.load() > 0 && absl::Now() < drain_until) SleepFor(absl::Milliseconds(10));
      result = TransferLeadershipAway(node, deadline);
    }
    Stop();
    STEAD_LOG(logger, Info) << "stopped";
    return result;
  }

  // Hands leadership to the most caught-up voter and waits until it took over.
  absl::Status TransferLeadershipAway(server::RaftNode* node, absl::Time deadline) {
    server::RaftNodeStatus status = node->Status();
    if (status.role != raft::Role::kLeader) return absl::OkStatus();
    const raft::NodeId target = server::MostCaughtUpVoter(status);
    if (target == raft::kNoNode) {
      STEAD_LOG(logger, Info) << "no caught-up voter to hand leadership to";
      return absl::OkStatus();
    }
    STEAD_LOG(logger, Info) << "handing leadership to member " << target << " (match "
                            << server::FindPeer(status, target)->match << " of "
                            << status.last_index << ")";
    // A transfer is abandoned by the core after an election timeout; try a few times.
    while (absl::Now() < deadline) {
      node->TransferLeadership(target);
      const absl::Time attempt_end =
          std::min(deadline, absl::Now() + config.tick_interval * (config.election_ticks * 2));
      while (absl::Now() < attempt_end) {
        status = node->Status();
        if (status.role != raft::Role::kLeader) {
          STEAD_LOG(logger, Info) << "leadership handed over in term " << status.term;
          return absl::OkStatus();
        }
        SleepFor(absl::Milliseconds(10));
      }
    }
    return absl::DeadlineExceededError("leadership was not handed over within the shutdown timeout");
  }

  void Stop() {
    {
      MutexLock lock(&mu);
      if (stopping) return;
      stopping = true;
      wake.SignalAll();
    }
    if (supervisor.joinable()) supervisor.join();
    if (watches) watches->Stop();  // tells watchers to go elsewhere, while connections are up
    if (client) client->Stop();
    if (authorizer) authorizer->Stop();  // its last callbacks run before kv goes
    if (forwarder) forwarder->Stop();
    if (http) http->Stop();
    // After this no transport handler runs, so nothing reaches the raft node.
    if (transport) transport->Stop();
    raft_ptr = nullptr;
    kv_ptr = nullptr;
    if (raft) raft->Stop();
    if (backups) backups->Stop();  // before the state machine closes
    work.reset();
    // Let the io threads finish what the stopped parts left; timers could keep them.
    const absl::Time until = absl::Now() + absl::Seconds(2);
    while (!io.stopped() && absl::Now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    io.stop();
    for (std::thread& thread : io_threads) thread.join();
    io_threads.clear();
    kv.reset();
    raft.reset();
    state.reset();  // flushes memtables: a clean close
    wal.reset();
    MutexLock lock(&mu);
    if (phase != Phase::kFailed) phase = Phase::kStopped;
  }

  const ServerConfig config;
  const MemberName member;
  const Logger logger;

  // Before `io`: transfers pin checkpoints until their handlers are destroyed with it.
  std::unique_ptr<server::SnapshotStore> snapshots;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  std::vector<std::thread> io_threads;
  server::MetricsRegistry metrics;
  server::RaftNodeMetrics raft_metrics;
  server::Counter* requests_total = nullptr;
  server::Counter* forwarded_total = nullptr;

  std::unique_ptr<server::PeerTransport> transport;
  std::unique_ptr<server::HttpServer> http;
  std::unique_ptr<server::WatchHub> watches;
  std::unique_ptr<server::ClientService> client;
  std::unique_ptr<server::Forwarder> forwarder;
  // Null for a port without TLS (MakeTlsProviders).
  std::shared_ptr<wire::TlsContextProvider> client_tls, forward_tls, peer_tls_server,
      peer_tls_client, http_tls;
  std::unique_ptr<server::BackupService> backups;
  // Set once by Activate; the atomics are what handlers on other threads read.
  std::unique_ptr<storage::Wal> wal;
  std::unique_ptr<storage::StateMachine> state;
  std::unique_ptr<server::RaftNode> raft;
  std::unique_ptr<server::Authorizer> authorizer;  // before kv, which borrows it
  std::unique_ptr<server::KvService> kv;
  std::atomic<const server::Authorizer*> authorizer_ptr{nullptr};
  std::atomic<server::RaftNode*> raft_ptr{nullptr};
  std::atomic<server::KvService*> kv_ptr{nullptr};

  std::thread supervisor;
  std::atomic<bool> draining{false};
  std::atomic<bool> shutdown_started{false};
  std::atomic<int64_t> in_flight{0};
  std::atomic<bool> change_in_flight{false};
  // Leader: when it last heard from each member (join requests under a running
  // member's name are refused until that member has been silent long enough).
  server::ContactTracker contacts ABSL_GUARDED_BY(mu);
  // Ids refused for joining under a running member's name, each logged once.
  std::set<raft::NodeId> refused_joiners ABSL_GUARDED_BY(mu);
  // Why this member serves nothing: its peers showed its volumes are stale
  // (CheckForStaleVolumes); empty while they did not.
  std::string stale_volumes ABSL_GUARDED_BY(mu);
  std::atomic<bool> on_stale_volumes{false};  // !stale_volumes.empty()
  // Why the leader last refused this member's join request; empty when it did not.
  std::string join_refusal ABSL_GUARDED_BY(mu);
  bool ever_member = false;  // supervisor thread (and Activate before it)

  mutable Mutex mu;
  CondVar wake;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  Phase phase ABSL_GUARDED_BY(mu) = Phase::kDiscovering;
  std::string failure ABSL_GUARDED_BY(mu);
  uint64_t cluster_id ABSL_GUARDED_BY(mu) = 0;
  raft::NodeId node_id ABSL_GUARDED_BY(mu) = raft::kNoNode;
  bool transport_identity_set ABSL_GUARDED_BY(mu) = false;
  std::map<raft::NodeId, pb::MemberInfo> members ABSL_GUARDED_BY(mu);  // others only
  std::string join_hint ABSL_GUARDED_BY(mu);  // peer address of the leader, when known
};

// --- Node ----------------------------------------------------------------------------

Node::Node(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Node::~Node() = default;

namespace server {

absl::StatusOr<std::unique_ptr<Node>> StartNode(const ServerConfig& config) {
  auto impl = std::make_unique<Node::Impl>(config);
  if (absl::Status started = impl->Start(); !started.ok()) {
    impl->Stop();
    return started;
  }
  return std::unique_ptr<Node>(new Node(std::move(impl)));
}

}  // namespace server

absl::StatusOr<std::unique_ptr<Node>> Node::Start(const NodeOptions& options) {
  std::vector<std::string> args;
  auto flag = [&](const char* name, const std::string& value) {
    if (!value.empty()) args.push_back(absl::StrCat("--", name, "=", value));
  };
  auto number = [&](const char* name, int64_t value) {
    if (value != 0) args.push_back(absl::StrCat("--", name, "=", value));
  };
  flag("name", options.name);
  flag("data-dir", options.data_dir);
  flag("wal-dir", options.wal_dir);
  // An embedded member listens on loopback unless told otherwise: the application
  // decides what it exposes, not the library.
  flag("client-addr", options.client_addr.empty() ? kEmbeddedClientAddr : options.client_addr);
  flag("peer-addr", options.peer_addr.empty() ? kEmbeddedPeerAddr : options.peer_addr);
  flag("http-addr", options.http_addr.empty() ? kEmbeddedHttpAddr : options.http_addr);
  flag("advertise-host", options.advertise_host);
  flag("peers", options.peers);
  flag("peer-service", options.peer_service);
  flag("namespace", options.namespace_name);
  flag("cluster-domain", options.cluster_domain);
  number("initial-cluster-size", options.initial_cluster_size);
  flag("log-level", options.log_level);
  if (options.tick_interval_ms != 0) flag("tick-interval", absl::StrCat(options.tick_interval_ms, "ms"));
  number("election-ticks", options.election_ticks);
  number("heartbeat-ticks", options.heartbeat_ticks);
  if (options.shutdown_timeout_ms != 0) {
    flag("shutdown-timeout", absl::StrCat(options.shutdown_timeout_ms, "ms"));
  }
  flag("promote-learners", options.promote_learners);
  if (options.replace_silent_member_after_ms != 0) {
    flag("replace-silent-member-after", absl::StrCat(options.replace_silent_member_after_ms, "ms"));
  }
  number("watch-history-revisions", options.watch_history_revisions);
  if (options.watch_history_age_ms != 0) {
    flag("watch-history-age", absl::StrCat(options.watch_history_age_ms, "ms"));
  }
  number("snapshot-entries", options.snapshot_entries);
  number("snapshot-send-rate", options.snapshot_send_rate_mb_per_second);
  number("memory-limit", options.memory_limit_bytes);
  number("io-threads", options.io_threads);
  number("max-response-bytes", options.max_response_bytes);
  number("max-client-connections", options.max_client_connections);
  if (options.client_idle_timeout_ms != 0) {
    flag("client-idle-timeout", absl::StrCat(options.client_idle_timeout_ms, "ms"));
  }
  if (options.client_read_timeout_ms != 0) {
    flag("client-read-timeout", absl::StrCat(options.client_read_timeout_ms, "ms"));
  }
  for (const auto& [port, tls] : {std::pair<const char*, const NodeTlsOptions*>{"client", &options.client_tls},
                                 {"peer", &options.peer_tls},
                                 {"http", &options.http_tls}}) {
    flag(absl::StrCat(port, "-cert-file").c_str(), tls->cert_file);
    flag(absl::StrCat(port, "-key-file").c_str(), tls->key_file);
    flag(absl::StrCat(port, "-trusted-ca-file").c_str(), tls->trusted_ca_file);
    if (tls->cert_auth) flag(absl::StrCat(port, "-cert-auth").c_str(), "true");
  }
  if (options.tls_transition) flag("tls-transition", "true");
  flag("restore-from", options.restore_from);
  flag("force-new-cluster", options.force_new_cluster);
  flag("new-cluster-identity", options.new_cluster_identity);
  // Options are the whole configuration: the process environment is not consulted.
  STEAD_ASSIGN_OR_RETURN(
      server::ParsedCommandLine parsed,
      server::ParseServerCommandLine(args, [](const std::string&) { return std::nullopt; }));
  return server::StartNode(parsed.config);
}

absl::Status Node::Shutdown() { return impl_->Shutdown(); }

NodeStatus Node::Status() const { return impl_->GetStatus(); }

absl::Status Node::WaitUntilReady(absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const NodeStatus status = impl_->GetStatus();
    if (status.ready) return absl::OkStatus();
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(status.name, " not ready: ", status.not_ready_reason));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

absl::Status Node::Put(std::string_view key, std::string_view value, absl::Duration timeout) {
  pb::ClientRequest request;
  request.mutable_put()->set_key(std::string(key));
  request.mutable_put()->set_value(std::string(value));
  return impl_->Call(std::move(request), timeout).status();
}

absl::StatusOr<std::optional<std::string>> Node::Get(std::string_view key,
                                                     ReadConsistency consistency,
                                                     absl::Duration timeout) {
  pb::ClientRequest request;
  request.mutable_range()->set_key(std::string(key));
  request.mutable_range()->set_consistency(consistency == ReadConsistency::kSerializable
                                               ? pb::READ_CONSISTENCY_SERIALIZABLE
                                               : pb::READ_CONSISTENCY_LINEARIZABLE);
  STEAD_ASSIGN_OR_RETURN(pb::ClientResponse response, impl_->Call(std::move(request), timeout));
  if (response.range().kvs().empty()) return std::nullopt;
  return response.range().kvs(0).value();
}

absl::Status Node::Delete(std::string_view key, absl::Duration timeout) {
  pb::ClientRequest request;
  request.mutable_delete_range()->set_key(std::string(key));
  return impl_->Call(std::move(request), timeout).status();
}

absl::Status Node::RemoveMember(std::string_view name, absl::Duration timeout) {
  pb::ClientRequest request;
  request.mutable_member_remove()->set_name(std::string(name));
  return impl_->Call(std::move(request), timeout).status();
}

}  // namespace stead
