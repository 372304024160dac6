// steadctl: the admin CLI of a stead cluster, over stead::Client.
//
//   steadctl [--endpoints=H:P,...] [--output=table|json] [--timeout=5s] COMMAND ARGS
//
// Exit codes (stable; scripts rely on them):
//   0  success
//   1  any other error
//   2  invalid argument: bad command, flag or request (InvalidArgument)
//   3  not found: `get` of an absent key, a `member` or `leader` command naming an
//      unknown member
//   4  failed compare: `txn` ran its --else branch
//   5  unavailable: no member answered, no leader, or the deadline passed
//   6  failed precondition: the cluster cannot do it as asked now (`member promote` of
//      a learner not caught up, `leader transfer` to a learner); `member add` always;
//      `snapshot restore` into volumes in use
//   7  data loss: `snapshot verify|inspect|restore` of a corrupt, truncated or foreign
//      file
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <csignal>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/steadctl_io.h"
#include "client/steadctl_auth.h"
#include "client/steadctl_snapshot.h"
#include "client/steadctl_txn.h"
#include "stead/client.h"
#include "wire/tls_context.h"
#include "wire/tls_verify.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitInvalidArgument = 2;
constexpr int kExitNotFound = 3;
constexpr int kExitFailedCompare = 4;  // `txn` ran its --else branch
constexpr int kExitUnavailable = 5;
constexpr int kExitFailedPrecondition = 6;
constexpr int kExitDataLoss = 7;
constexpr int kExitDenied = 8;  // permission denied, or not authenticated

constexpr char kDefaultEndpoints[] = "127.0.0.1:2479,127.0.0.1:2489,127.0.0.1:2499";

constexpr char kMainHelp[] =
    "steadctl: the admin CLI of a stead cluster\n"
    "\n"
    "usage: steadctl [global flags] COMMAND [ARGS] [--help]\n"
    "\n"
    "commands:\n"
    "  get KEY [--serializable]        print the value (bare); exit 3 if absent\n"
    "  put KEY VALUE|-|--value-file=PATH\n"
    "                                  set KEY to VALUE, to standard input (-) or to\n"
    "                                  the bytes of the file PATH\n"
    "  del KEY                         delete KEY; prints how many keys were deleted\n"
    "  scan PREFIX [--limit=N] [--serializable] [--keys-only]\n"
    "                                  keys starting with PREFIX, all pages (or at most N)\n"
    "  txn [--if COND]... [--then OP]... [--else OP]...\n"
    "                                  compare-and-swap: if every COND holds run the\n"
    "                                  --then OPs, else the --else OPs, atomically;\n"
    "                                  exit 4 if a COND failed (see steadctl txn --help)\n"
    "  watch KEY [--prefix] [--rev=N] [--count=N] [--duration=D]\n"
    "                                  print changes of KEY (or keys starting with it)\n"
    "                                  as they happen, from revision N\n"
    "  member list                     the members: id, name, addresses, role\n"
    "  member remove NAME|ORDINAL|ID   remove a member (scale-down runbook)\n"
    "  member promote NAME|ORDINAL|ID  make a caught-up learner a voter now\n"
    "  member add NAME                 explains how members join (they add themselves)\n"
    "  leader transfer [--to NAME|ORDINAL|ID] [--from NAME|ORDINAL|ID]\n"
    "                                  hand leadership to that voter, or to the most\n"
    "                                  caught-up one; with --from only away from that\n"
    "                                  member, and nothing (exit 0) when it does not lead\n"
    "  cluster status [--http-port-offset=N]\n"
    "                                  one row per member with term, commit and applied\n"
    "                                  index from its HTTP /metrics\n"
    "  cluster health [--http-port-offset=N]\n"
    "                                  each member's /readyz; exit 5 unless all are ready\n"
    "  endpoint hash [--cluster]       content hash, applied index, revision and key\n"
    "                                  count of each endpoint's state\n"
    "  snapshot save FILE [--endpoint=H:P] [--force]\n"
    "                                  back up one member's state (default: the\n"
    "                                  leader's) into the file FILE\n"
    "  snapshot verify FILE            check every byte of a backup file\n"
    "  snapshot inspect FILE           what a backup holds: cluster, index, members, keys\n"
    "  snapshot restore FILE --data-dir=D --wal-dir=W --name=N --peer-addr=H:P\n"
    "                   --client-addr=H:P\n"
    "                                  make empty volumes the first member of a new\n"
    "                                  cluster holding the backup's data\n"
    "  user add|passwd|delete|list|grant-role|revoke-role\n"
    "                                  manage users (see steadctl user --help)\n"
    "  role add|delete|list|grant-permission|revoke-permission\n"
    "                                  manage roles and their key permissions\n"
    "  auth enable|disable|status      switch authentication and permissions on or off\n"
    "\n"
    "global flags:\n"
    "  --endpoints=H:P,...   client addresses of members (env STEAD_ENDPOINTS;\n"
    "                        default 127.0.0.1:2479,127.0.0.1:2489,127.0.0.1:2499)\n"
    "  --output=table|json   output format (default table)\n"
    "  --timeout=DURATION    deadline of each request, retries included (default 5s)\n"
    "  --cacert=FILE         TLS: PEM CA certificates that issue the members' certificates\n"
    "                        (their client and HTTP ports); TLS is on with any of these three\n"
    "                        (env STEAD_CACERT)\n"
    "  --cert=FILE, --key=FILE\n"
    "                        TLS: this client's certificate and key, for members that require\n"
    "                        client certificates (--client-cert-auth; env STEAD_CERT, STEAD_KEY)\n"
    "  --user=NAME           authenticate as NAME once the cluster has auth enabled; the\n"
    "                        password comes from --password-file=FILE (its first line) or\n"
    "                        is asked on the terminal, never on the command line\n"
    "  --help, --version\n"
    "\n"
    "output: tables print one key and value per line, escaped: \\\\ \\t \\n \\r, and\n"
    "  \\xHH for other control bytes and bytes that are not valid UTF-8 (get prints\n"
    "  the bare value). JSON gives each key, value, name or path that is valid UTF-8\n"
    "  as a string (\"value\"), any other in base64 under its name with _base64\n"
    "  (\"value_base64\").\n"
    "\n"
    "exit codes: 0 ok, 1 other error, 2 invalid argument, 3 not found,\n"
    "            4 failed compare (txn), 5 unavailable or deadline passed,\n"
    "            6 failed precondition (e.g. promoting a learner not caught up),\n"
    "            7 data loss (a corrupt, truncated or foreign backup file)\n";

const std::map<std::string, std::string>& CommandHelp() {
  static const auto* help = new std::map<std::string, std::string>{
      {"get", "usage: steadctl get KEY [--serializable]\n"
              "Prints the value of KEY: its bytes as they are and a newline (table), or\n"
              "{\"key\",\"found\",\"value\"} (json; \"value_base64\" when not UTF-8).\n"
              "Exit 3 when the key does not exist. --serializable reads the answering\n"
              "member's local state (may be stale) instead of a linearizable read.\n"},
      {"put", "usage: steadctl put KEY VALUE | put KEY - | put KEY --value-file=PATH\n"
              "Sets KEY to VALUE; prints OK. With - the value is every byte of standard\n"
              "input up to its end, with --value-file every byte of the file PATH: values\n"
              "with any bytes (NUL included) and values too long for an argument (over\n"
              "128 KiB). A value over the server's limit (max_value_bytes, 1 MiB) is\n"
              "refused with exit 2 and nothing is written; input over 3 MiB is refused\n"
              "so by steadctl, before it sends anything. To store the one-character\n"
              "value '-', pipe it: printf - | steadctl put KEY -\n"},
      {"del", "usage: steadctl del KEY\nDeletes KEY; prints the number of keys deleted (0 or 1).\n"},
      {"scan", "usage: steadctl scan PREFIX [--limit=N] [--serializable] [--keys-only]\n"
               "Prints every key starting with PREFIX and its value (key TAB value), in key\n"
               "order, fetching page after page; --limit stops after N keys.\n"
               "Keys and values are escaped so that each pair is one line: backslash, tab,\n"
               "newline and CR as \\\\ \\t \\n \\r; NUL, other control bytes and bytes that\n"
               "are not valid UTF-8 as \\xHH (e.g. \\x00, \\xff); valid UTF-8 as it is.\n"
               "With --output=json: {\"kvs\":[{\"key\",\"value\",...}],\"count\"}, a key or\n"
               "value that is not valid UTF-8 as \"key_base64\" or \"value_base64\".\n"},
      {"txn", absl::StrCat("usage: steadctl txn [--if COND]... [--then OP]... [--else OP]...\n",
                           stead::ctl::kTxnSyntaxHelp, "\nexample:\n",
                           "  steadctl txn --if 'value(config) = v1' --if '!exists(lock)' \\\n"
                           "               --then 'put config v2' --else 'get config'\n")},
      {"watch", "usage: steadctl watch KEY [--prefix] [--rev=N] [--count=N] [--duration=D]\n"
                "Prints every change of KEY (with --prefix: of every key starting with KEY),\n"
                "one line each, in revision order, from revision N (default: changes from\n"
                "now on): table 'PUT key value revision' or 'DELETE key revision' (tab-\n"
                "separated, escaped as steadctl scan --help says), json one object per line.\n"
                "A lost member is replaced by another without losing or repeating a change.\n"
                "Stops after --count changes, after --duration (e.g. 30s), or on SIGINT/\n"
                "SIGTERM, with exit 0; a revision already compacted exits 1 naming the\n"
                "oldest revision still available.\n"},
      {"member", "usage: steadctl member list | remove WHO | promote WHO | add NAME\n"
                 "WHO is a member name (stead-2), an ordinal N (a number below 65536) or\n"
                 "an id (a larger number, or 0x hex).\n"
                 "list: id, name, peer and client address, role of every member.\n"
                 "remove: removes the member and prints the configuration afterwards.\n"
                 "promote: makes a learner a voter (see steadctl member promote --help).\n"
                 "add: members add themselves (see steadctl member add --help).\n"
                 "Exit 3 for an unknown member.\n"},
      {"member promote",
       "usage: steadctl member promote NAME|ORDINAL|ID\n"
       "Makes the learner a voter now and prints the configuration afterwards. The\n"
       "leader promotes a learner by itself once it is caught up, unless the members\n"
       "run with --promote-learners=manual (learners then stay read replicas until\n"
       "promoted here). The learner must be within 100 entries of the leader's log and\n"
       "have answered it recently: otherwise exit 6, with its lag in the message.\n"
       "A member that is a voter already: exit 0, \"already a voter\" (json:\n"
       "\"already_voter\":true). Exit 3 for an unknown member.\n"},
      {"member add",
       "usage: steadctl member add NAME [--peer-addr=HOST:PORT] [--client-addr=HOST:PORT]\n"
       "stead has no add step: a member adds itself. Start it with empty volumes (scale\n"
       "the StatefulSet up, or run `stead --name=NAME --peers=...`): it finds the\n"
       "cluster, asks the leader to join, is added as a learner, receives the log and\n"
       "is promoted to voter once caught up (with --promote-learners=manual: by\n"
       "`steadctl member promote NAME`). Its id and addresses come from the member\n"
       "itself, so they cannot be registered ahead of it.\n"
       "This command changes nothing: it exits 6 with this explanation, so that a\n"
       "script written for an add-then-start order fails loudly. `member list` shows\n"
       "the member once it has joined.\n"},
      {"leader", "usage: steadctl leader transfer [--to WHO] [--from WHO]\n"
                 "WHO is NAME|ORDINAL|ID; see steadctl leader transfer --help.\n"},
      {"leader transfer",
       "usage: steadctl leader transfer [--to NAME|ORDINAL|ID] [--from NAME|ORDINAL|ID]\n"
       "Hands leadership to the voter --to names, or without --to to the most caught-up\n"
       "voter the leader heard from recently, and waits (up to --timeout) until the\n"
       "new leader has taken over. Prints the new and the previous leader (json:\n"
       "{\"previous_leader\":{...},\"leader\":{...},\"moved\":true|false}). A --to\n"
       "member that leads already: exit 0.\n"
       "--from: only if that member leads (as the member list shows it), hand\n"
       "leadership away from it; exit 0 once another member leads. If it does not\n"
       "lead, print \"NAME is not the leader (LEADER is): nothing done\" (json: the\n"
       "leader as both, \"moved\":false) and exit 0. While no leader is known it asks\n"
       "again, until --timeout, which bounds the whole command. For a pod's preStop\n"
       "hook:\n"
       "  steadctl --endpoints=127.0.0.1:2479 leader transfer --from=\"$POD_NAME\"\n"
       "Exit 3 for an unknown member; 2 when --to and --from name the same member; 6\n"
       "for a learner, a member the leader has not heard from recently, or no voter to\n"
       "take over; 5 when the handover was not seen in time.\n"},
      {"cluster", "usage: steadctl cluster status|health [--http-port-offset=N]\n"
                  "status: one row per member: name, ordinal, id, role, client address,\n"
                  "term, commit and applied index (from the member's HTTP /metrics), lag\n"
                  "(the leader's commit index minus the member's applied index), health.\n"
                  "health: each member's /readyz; exit 5 unless every member is ready.\n"
                  "A member's HTTP port is taken as its client port + N (default 2, as in\n"
                  "the default ports 2479/2481 and scripts/run); the member list does not\n"
                  "carry HTTP addresses.\n"},
      {"endpoint", "usage: steadctl endpoint hash [--cluster]\n"
                   "Asks each endpoint of --endpoints (with --cluster: every member in the\n"
                   "member list) for the content hash of its own state: FNV-1a 64 over every\n"
                   "stored pair, computed by that member at its applied index (never\n"
                   "forwarded). One row per endpoint: endpoint, member id, hash, applied index,\n"
                   "revision, key count (pairs hashed). Members that applied the same index\n"
                   "have the same hash; compare them once writes have stopped and the applied\n"
                   "indexes agree. An endpoint that fails is reported on stderr (json: an\n"
                   "\"error\" field) and the exit code is that of its failure (5 unreachable).\n"},
      {"user", stead::ctl::kUserHelp},
      {"role", stead::ctl::kRoleHelp},
      {"auth", stead::ctl::kAuthHelp},
      {"snapshot", stead::ctl::kSnapshotHelp},
      {"snapshot save", stead::ctl::kSnapshotSaveHelp},
      {"snapshot verify", stead::ctl::kSnapshotVerifyHelp},
      {"snapshot inspect", stead::ctl::kSnapshotInspectHelp},
      {"snapshot restore", stead::ctl::kSnapshotRestoreHelp},
  };
  return *help;
}

struct Flags {
  std::string endpoints;
  stead::ClientTlsOptions tls;  // --cacert, --cert, --key
  std::string output = "table";
  absl::Duration timeout = absl::Seconds(5);
  bool serializable = false;
  bool keys_only = false;
  int64_t limit = 0;
  int http_port_offset = 2;
  std::string to;    // leader transfer --to
  std::string from;  // leader transfer --from
  // member add: accepted so that the command can explain itself (it changes nothing).
  std::string peer_addr, client_addr;
  bool help = false;
  // watch
  bool prefix = false;
  bool cluster = false;  // endpoint hash --cluster
  // snapshot save --endpoint, --force; restore --data-dir, --wal-dir, --name (and the
  // --peer-addr and --client-addr above).
  std::string endpoint, data_dir, wal_dir, name;
  bool force = false;
  int64_t revision = 0;
  int64_t count = 0;
  absl::Duration duration = absl::InfiniteDuration();
  // put --value-file: the file holding the value.
  std::string value_file;
  // txn: the texts of --if, --then and --else, each in order (steadctl_txn.h).
  std::vector<std::string> txn_ifs, txn_thens, txn_elses;
  // --user, --password-file; user/role: --range-end, --new-password-file, --no-password.
  std::string user, password_file, range_end, new_password_file;
  bool no_password = false;
  std::vector<std::string> args;  // command and its positional arguments
};

int Fail(int code, const std::string& message) {
  std::fprintf(stderr, "steadctl: %s\n", message.c_str());
  return code;
}

int ExitCodeOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk: return kExitOk;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kAlreadyExists: return kExitInvalidArgument;
    case absl::StatusCode::kDataLoss: return kExitDataLoss;
    case absl::StatusCode::kNotFound: return kExitNotFound;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded: return kExitUnavailable;
    case absl::StatusCode::kFailedPrecondition: return kExitFailedPrecondition;
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated: return kExitDenied;
    default: return kExitError;
  }
}

int FailStatus(const absl::Status& status) { return Fail(ExitCodeOf(status), status.ToString()); }

// Parses flags anywhere on the line; the rest are positional. InvalidArgument names
// the flag.
absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags flags;
  const char* env = std::getenv("STEAD_ENDPOINTS");
  flags.endpoints = env != nullptr && *env != '\0' ? env : kDefaultEndpoints;
  // In a pod (a preStop hook, a backup job) TLS comes from the environment.
  for (auto [variable, field] : {std::pair{"STEAD_CACERT", &flags.tls.trusted_ca_file},
                                 std::pair{"STEAD_CERT", &flags.tls.cert_file},
                                 std::pair{"STEAD_KEY", &flags.tls.key_file}}) {
    const char* value = std::getenv(variable);
    if (value == nullptr || *value == '\0') continue;
    *field = value;
    flags.tls.enabled = true;
  }
  bool positional_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (positional_only || arg.empty() || arg[0] != '-' || arg == "-") {
      flags.args.push_back(arg);
      continue;
    }
    if (arg == "--") {
      positional_only = true;
      continue;
    }
    std::string name = arg, value;
    bool has_value = false;
    if (const size_t eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    auto take = [&]() -> absl::StatusOr<std::string> {
      if (has_value) return value;
      if (i + 1 >= argc) return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      return std::string(argv[++i]);
    };
    if (name == "-h" || name == "--help") {
      flags.help = true;
    } else if (name == "--serializable") {
      flags.serializable = true;
    } else if (name == "--keys-only") {
      flags.keys_only = true;
    } else if (name == "--prefix") {
      flags.prefix = true;
    } else if (name == "--cluster") {
      flags.cluster = true;
    } else if (name == "--no-password") {
      flags.no_password = true;
    } else if (name == "--password") {
      return absl::InvalidArgumentError(
          "no password on the command line: use --password-file=FILE, or type it when asked");
    } else if (name == "--user" || name == "--password-file" || name == "--range-end" ||
               name == "--new-password-file") {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      std::string& field = name == "--user"            ? flags.user
                           : name == "--password-file" ? flags.password_file
                           : name == "--range-end"     ? flags.range_end
                                                       : flags.new_password_file;
      field = *std::move(v);
    } else if (name == "--force") {
      flags.force = true;
    } else if (name == "--endpoint" || name == "--data-dir" || name == "--wal-dir" ||
               name == "--name") {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      std::string& field = name == "--endpoint" ? flags.endpoint
                           : name == "--data-dir" ? flags.data_dir
                           : name == "--wal-dir"  ? flags.wal_dir
                                                  : flags.name;
      field = *v;
    } else if (name == "--rev" || name == "--count") {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      int64_t& number = name == "--rev" ? flags.revision : flags.count;
      if (!absl::SimpleAtoi(*v, &number) || number < 0) {
        return absl::InvalidArgumentError(absl::StrCat(name, ": '", *v, "' is not a count"));
      }
    } else if (name == "--duration") {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      if (!absl::ParseDuration(*v, &flags.duration) || flags.duration <= absl::ZeroDuration()) {
        return absl::InvalidArgumentError(absl::StrCat("--duration: '", *v, "' is not a duration like 30s"));
      }
    } else if (name == "--value-file") {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      if (v->empty()) return absl::InvalidArgumentError("--value-file needs a PATH");
      flags.value_file = *v;
    } else if (name == "--cacert" || name == "--cert" || name == "--key") {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      if (v->empty()) return absl::InvalidArgumentError(absl::StrCat(name, " needs a FILE"));
      std::string& field = name == "--cacert" ? flags.tls.trusted_ca_file
                           : name == "--cert" ? flags.tls.cert_file
                                              : flags.tls.key_file;
      field = *v;
      flags.tls.enabled = true;
    } else if (name == "--endpoints") {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      flags.endpoints = *v;
    } else if (name == "--output" || name == "-o") {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      if (*v != "table" && *v != "json") {
        return absl::InvalidArgumentError(absl::StrCat("--output must be table or json, not '", *v, "'"));
      }
      flags.output = *v;
    } else if (name == "--timeout") {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      if (!absl::ParseDuration(*v, &flags.timeout) || flags.timeout <= absl::ZeroDuration()) {
        return absl::InvalidArgumentError(absl::StrCat("--timeout: '", *v, "' is not a duration like 5s"));
      }
    } else if (name == "--limit") {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      if (!absl::SimpleAtoi(*v, &flags.limit) || flags.limit < 0) {
        return absl::InvalidArgumentError(absl::StrCat("--limit: '", *v, "' is not a count"));
      }
    } else if (name == "--if" || name == "--then" || name == "--else") {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      std::vector<std::string>& texts =
          name == "--if" ? flags.txn_ifs : (name == "--then" ? flags.txn_thens : flags.txn_elses);
      texts.push_back(*v);
    } else if (name == "--to" || name == "--from" || name == "--peer-addr" ||
               name == "--client-addr") {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      std::string& field = name == "--to"          ? flags.to
                           : name == "--from"      ? flags.from
                           : name == "--peer-addr" ? flags.peer_addr
                                                   : flags.client_addr;
      field = *v;
      // An empty --from would make `leader transfer` hand over whoever leads: a preStop
      // hook with an unset POD_NAME must fail, not move leadership for no reason.
      if (name == "--from" && field.empty()) {
        return absl::InvalidArgumentError("--from needs NAME|ORDINAL|ID, not an empty value");
      }
    } else if (name == "--http-port-offset") {
      absl::StatusOr<std::string> v = take();
      if (!v.ok()) return v.status();
      if (!absl::SimpleAtoi(*v, &flags.http_port_offset)) {
        return absl::InvalidArgumentError(absl::StrCat("--http-port-offset: '", *v, "' is not a number"));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", name, " (see steadctl --help)"));
    }
  }
  return flags;
}

using ::stead::ctl::EscapeBytes;
using ::stead::ctl::Json;
using ::stead::ctl::PrintJson;
using ::stead::ctl::SetBytes;

Json KeyValueJson(const stead::KeyValue& kv) {
  Json json;
  SetBytes(json, "key", kv.key);
  SetBytes(json, "value", kv.value);
  json["create_revision"] = kv.create_revision;
  json["mod_revision"] = kv.mod_revision;
  json["version"] = kv.version;
  return json;
}

Json KeyValuesJson(const std::vector<stead::KeyValue>& kvs) {
  Json json = Json::array();
  for (const stead::KeyValue& kv : kvs) json.push_back(KeyValueJson(kv));
  return json;
}

// One line of table output for a pair: KEY TAB VALUE, both escaped.
void PrintKeyValue(const stead::KeyValue& kv) {
  std::printf("%s\t%s\n", EscapeBytes(kv.key).c_str(), EscapeBytes(kv.value).c_str());
}

std::string Role(const stead::Member& member) {
  if (member.is_leader) return "leader";
  return member.is_learner ? "learner" : "follower";
}

Json MemberJson(const stead::Member& m) {
  Json json;
  json["id"] = m.id;
  json["id_hex"] = absl::StrFormat("%016x", m.id);
  SetBytes(json, "name", m.name);
  SetBytes(json, "peer_address", m.peer_address);
  SetBytes(json, "client_address", m.client_address);
  json["role"] = Role(m);
  json["is_learner"] = m.is_learner;
  json["is_leader"] = m.is_leader;
  json["match_index"] = m.match_index;
  return json;
}

Json MembersJson(const std::vector<stead::Member>& members) {
  Json json = Json::array();
  for (const stead::Member& m : members) json.push_back(MemberJson(m));
  return json;
}

void PrintMembers(const Flags& flags, const std::vector<stead::Member>& members) {
  if (flags.output == "json") {
    PrintJson({{"members", MembersJson(members)}});
    return;
  }
  std::printf("%-16s  %-12s  %-22s  %-22s  %s\n", "ID", "NAME", "PEER", "CLIENT", "ROLE");
  for (const stead::Member& m : members) {
    std::printf("%016llx  %-12s  %-22s  %-22s  %s\n", static_cast<unsigned long long>(m.id),
                m.name.c_str(), m.peer_address.c_str(), m.client_address.c_str(), Role(m).c_str());
  }
}

// A TCP connection to host:port (a name or an address literal, resolved now: in
// Kubernetes members are known by their pods' DNS names) made before `deadline`, or -1.
int ConnectTcp(const std::string& host, int port, absl::Time deadline) {
  if (port <= 0 || port > 65535) return -1;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* addresses = nullptr;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &addresses) != 0) return -1;
  int fd = -1;
  for (const addrinfo* a = addresses; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    bool connected = ::connect(fd, a->ai_addr, a->ai_addrlen) == 0;
    if (!connected && errno == EINPROGRESS) {
      pollfd writable{fd, POLLOUT, 0};
      const int wait_ms = static_cast<int>(
          std::max<int64_t>(0, absl::ToInt64Milliseconds(deadline - absl::Now())));
      int error = 0;
      socklen_t length = sizeof error;
      connected = ::poll(&writable, 1, wait_ms) == 1 &&
                  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == 0;
    }
    if (!connected || ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(addresses);
  return fd;
}

// The status code and body of an HTTP response, or nullopt if it is not one.
std::optional<std::pair<int, std::string>> ParseHttpResponse(const std::string& response) {
  int code = 0;
  const size_t body = response.find("\r\n\r\n");
  std::vector<std::string> words = absl::StrSplit(response.substr(0, response.find("\r\n")), ' ');
  if (body == std::string::npos || words.size() < 2 || !absl::SimpleAtoi(words[1], &code)) {
    return std::nullopt;
  }
  return std::make_pair(code, response.substr(body + 4));
}

// One blocking HTTP/1.0 GET over TLS on the connected `fd` (owned), verifying that the
// member's certificate names `host`: as HttpGet.
std::optional<std::pair<int, std::string>> HttpsGet(int fd, const std::string& host,
                                                    const std::string& path, absl::Time deadline,
                                                    const stead::ClientTlsOptions& tls) {
  namespace asio = boost::asio;
  const stead::wire::TlsOptions options = {.cert_file = tls.cert_file,
                                           .key_file = tls.key_file,
                                           .trusted_ca_file = tls.trusted_ca_file};
  absl::StatusOr<stead::wire::TlsMaterial> material =
      stead::wire::LoadTlsMaterial(options, stead::wire::TlsRole::kClient, absl::Now());
  absl::StatusOr<std::shared_ptr<asio::ssl::context>> context =
      material.ok() ? stead::wire::MakeTlsContext(options, stead::wire::TlsRole::kClient, *material)
                    : material.status();
  if (!context.ok()) {
    ::close(fd);
    return std::nullopt;
  }
  asio::io_context io;
  asio::ssl::stream<asio::ip::tcp::socket> stream(io, **context);
  sockaddr_storage local{};
  socklen_t length = sizeof local;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length);
  boost::system::error_code ec;
  stream.next_layer().assign(local.ss_family == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4(),
                             fd, ec);
  if (ec) {
    ::close(fd);
    return std::nullopt;
  }
  const std::string name = tls.server_name.empty() ? host : tls.server_name;
  SSL* ssl = stream.native_handle();
  if (stead::wire::IsIpAddress(name)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
  } else {
    SSL_set1_host(ssl, name.c_str());
  }
  std::optional<std::pair<int, std::string>> result;
  stream.handshake(asio::ssl::stream_base::client, ec);
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", host, "\r\n\r\n");
  if (!ec) asio::write(stream, asio::buffer(request), ec);
  if (!ec) {
    std::string response;
    char buffer[8192];
    while (absl::Now() < deadline && response.size() < (4u << 20)) {
      const size_t n = stream.read_some(asio::buffer(buffer), ec);
      if (ec) break;
      response.append(buffer, n);
    }
    result = ParseHttpResponse(response);
  }
  return result;  // the stream closes the socket
}

// One blocking HTTP/1.0 GET on host:port, bounded by `timeout`, over TLS when `tls` is
// enabled: the status code and body, or nullopt.
std::optional<std::pair<int, std::string>> HttpGet(const std::string& host, int port,
                                                   const std::string& path, absl::Duration timeout,
                                                   const stead::ClientTlsOptions& tls) {
  const absl::Time deadline = absl::Now() + timeout;
  const int fd = ConnectTcp(host, port, deadline);
  if (fd < 0) return std::nullopt;
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(absl::ToInt64Seconds(timeout));
  tv.tv_usec = static_cast<suseconds_t>(absl::ToInt64Microseconds(timeout) % 1000000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (tls.enabled) return HttpsGet(fd, host, path, deadline, tls);
  std::optional<std::pair<int, std::string>> result;
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: ", host, "\r\n\r\n");
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(request.size())) {
    std::string response;
    char buffer[8192];
    // Bounded by the deadline and by 4 MiB.
    while (absl::Now() < deadline && response.size() < (4u << 20)) {
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      response.append(buffer, static_cast<size_t>(n));
    }
    result = ParseHttpResponse(response);
  }
  ::close(fd);
  return result;
}

// Where a member's HTTP port is: its client address with the port moved by `offset`.
bool HttpAddressOf(const stead::Member& member, int offset, std::string* host, int* port) {
  const size_t colon = member.client_address.rfind(':');
  if (colon == std::string::npos) return false;
  *host = member.client_address.substr(0, colon);
  if (!absl::SimpleAtoi(member.client_address.substr(colon + 1), port)) return false;
  *port += offset;
  return true;
}

std::string MetricValue(const std::string& metrics, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (absl::StartsWith(line, name + " ")) return std::string(line.substr(name.size() + 1));
  }
  return "";
}

// The ordinal of a member named "<set>-<ordinal>"; -1 for another name.
int OrdinalOf(const std::string& name) {
  const size_t dash = name.rfind('-');
  int ordinal = -1;
  if (dash == std::string::npos || !absl::SimpleAtoi(name.substr(dash + 1), &ordinal)) return -1;
  return ordinal;
}

int Get(stead::Client& client, const Flags& flags) {
  if (flags.args.size() != 2) return Fail(kExitInvalidArgument, "get needs KEY (see steadctl get --help)");
  const std::string& key = flags.args[1];
  absl::StatusOr<std::optional<std::string>> value =
      client.Get(key, {.serializable = flags.serializable, .timeout = flags.timeout});
  if (!value.ok()) return FailStatus(value.status());
  if (flags.output == "json") {
    Json json;
    SetBytes(json, "key", key);
    json["found"] = value->has_value();
    if (value->has_value()) SetBytes(json, "value", **value);
    PrintJson(json);
  } else if (value->has_value()) {
    // The bare bytes, for scripts to pipe.
    std::fwrite((*value)->data(), 1, (*value)->size(), stdout);
    std::printf("\n");
  }
  if (!value->has_value()) {
    if (flags.output != "json") {
      std::fprintf(stderr, "steadctl: key %s not found\n", EscapeBytes(key).c_str());
    }
    return kExitNotFound;
  }
  return kExitOk;
}

// The value of `put`: its VALUE argument, standard input for "-", or --value-file.
absl::StatusOr<std::string> PutValue(const Flags& flags) {
  const bool has_argument = flags.args.size() == 3;
  const bool has_file = !flags.value_file.empty();
  if (flags.args.size() < 2 || flags.args.size() > 3 || has_argument == has_file) {
    return absl::InvalidArgumentError(
        "put needs KEY and one of VALUE, - (standard input) or --value-file=PATH (see steadctl "
        "put --help)");
  }
  if (has_file) {
    return stead::ctl::ReadValueInput(flags.value_file, "--value-file=" + flags.value_file);
  }
  if (flags.args[2] == "-") return stead::ctl::ReadValueInput("-", "standard input");
  return flags.args[2];
}

int Put(stead::Client& client, const Flags& flags) {
  absl::StatusOr<std::string> value = PutValue(flags);
  if (!value.ok()) return FailStatus(value.status());
  absl::Status status = client.Put(flags.args[1], *value, {.timeout = flags.timeout});
  if (!status.ok()) return FailStatus(status);
  std::printf(flags.output == "json" ? "{\"ok\":true}\n" : "OK\n");
  return kExitOk;
}

int Del(stead::Client& client, const Flags& flags) {
  if (flags.args.size() != 2) return Fail(kExitInvalidArgument, "del needs KEY (see steadctl del --help)");
  absl::StatusOr<bool> deleted = client.Delete(flags.args[1], {.timeout = flags.timeout});
  if (!deleted.ok()) return FailStatus(deleted.status());
  std::printf(flags.output == "json" ? "{\"deleted\":%d}\n" : "%d\n", *deleted ? 1 : 0);
  return kExitOk;
}

int Scan(stead::Client& client, const Flags& flags) {
  if (flags.args.size() != 2) return Fail(kExitInvalidArgument, "scan needs PREFIX (see steadctl scan --help)");
  const std::string& prefix = flags.args[1];
  std::vector<stead::KeyValue> kvs;
  std::string begin = prefix;
  // Page after page; bounded by the limit and by 1,000,000 pages.
  for (int page = 0; page < 1'000'000; ++page) {
    const int64_t want = flags.limit > 0 ? flags.limit - static_cast<int64_t>(kvs.size()) : 0;
    absl::StatusOr<stead::RangeResult> result = client.Range(
        begin, {.range_end = stead::PrefixEnd(prefix), .limit = want, .keys_only = flags.keys_only,
                .serializable = flags.serializable, .timeout = flags.timeout});
    if (!result.ok()) return FailStatus(result.status());
    for (stead::KeyValue& kv : result->kvs) kvs.push_back(std::move(kv));
    if (!result->more || result->next_key.empty()) break;
    if (flags.limit > 0 && static_cast<int64_t>(kvs.size()) >= flags.limit) break;
    begin = result->next_key;
  }
  if (flags.output == "json") {
    PrintJson({{"kvs", KeyValuesJson(kvs)}, {"count", kvs.size()}});
  } else {
    for (const stead::KeyValue& kv : kvs) PrintKeyValue(kv);
  }
  return kExitOk;
}

// Prints changes as they come until --count, --duration or a signal.
int Watch(stead::Client& client, const Flags& flags) {
  if (flags.args.size() != 2) return Fail(kExitInvalidArgument, "watch needs KEY (see steadctl watch --help)");
  const std::string& key = flags.args[1];
  // Signals are taken synchronously below, not by handlers.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::mutex mu;
  int64_t printed = 0;
  std::optional<absl::Status> ended;
  const bool json = flags.output == "json";
  auto print = [&](const std::vector<stead::WatchEvent>& events, int64_t) {
    std::lock_guard<std::mutex> lock(mu);
    for (const stead::WatchEvent& event : events) {
      if (flags.count > 0 && printed >= flags.count) break;
      const bool put = event.type == stead::WatchEvent::Type::kPut;
      if (json) {
        PrintJson({{"type", put ? "PUT" : "DELETE"}, {"kv", KeyValueJson(event.kv)}});
      } else if (put) {
        std::printf("PUT\t%s\t%s\t%lld\n", EscapeBytes(event.kv.key).c_str(),
                    EscapeBytes(event.kv.value).c_str(),
                    static_cast<long long>(event.kv.mod_revision));
      } else {
        std::printf("DELETE\t%s\t%lld\n", EscapeBytes(event.kv.key).c_str(),
                    static_cast<long long>(event.kv.mod_revision));
      }
      ++printed;
    }
    std::fflush(stdout);
  };
  std::unique_ptr<stead::Watcher> watcher = client.Watch(
      key,
      {.range_end = flags.prefix ? stead::PrefixEnd(key) : std::string(),
       .start_revision = flags.revision},
      print, [&](absl::Status status) {
        std::lock_guard<std::mutex> lock(mu);
        ended = status;
      });
  const absl::Time until = absl::Now() + flags.duration;
  // Bounded by --duration, --count, the watch's end or a signal.
  while (absl::Now() < until) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (ended.has_value() || (flags.count > 0 && printed >= flags.count)) break;
    }
    const timespec tick{0, 100'000'000};
    if (sigtimedwait(&stop_signals, nullptr, &tick) > 0) break;
  }
  watcher.reset();
  if (ended.has_value() && !ended->ok()) return FailStatus(*ended);
  return kExitOk;
}

std::string TxnOpKindName(stead::TxnOp::Kind kind) {
  switch (kind) {
    case stead::TxnOp::Kind::kGet:
      return "get";
    case stead::TxnOp::Kind::kPut:
      return "put";
    case stead::TxnOp::Kind::kDelete:
      return "del";
  }
  return "?";
}

// `ops` are the operations of the branch that ran; result.responses has one per op.
void PrintTxnResult(const Flags& flags, const std::vector<stead::TxnOp>& ops,
                    const stead::TxnResult& result) {
  if (flags.output == "json") {
    Json responses = Json::array();
    for (size_t i = 0; i < ops.size(); ++i) {
      const stead::TxnOpResult& answer = result.responses[i];
      Json response;
      response["op"] = TxnOpKindName(ops[i].kind);
      SetBytes(response, "key", ops[i].key);
      if (!ops[i].range_end.empty()) SetBytes(response, "range_end", ops[i].range_end);
      if (answer.kind == stead::TxnOp::Kind::kDelete) response["deleted"] = answer.deleted;
      if (answer.kind == stead::TxnOp::Kind::kGet) {
        response["kvs"] = KeyValuesJson(answer.range.kvs);
        response["more"] = answer.range.more;
      }
      responses.push_back(std::move(response));
    }
    PrintJson({{"succeeded", result.succeeded},
               {"revision", result.revision},
               {"responses", std::move(responses)}});
    return;
  }
  std::printf("%s revision=%lld\n", result.succeeded ? "SUCCEEDED" : "FAILED",
              static_cast<long long>(result.revision));
  for (size_t i = 0; i < ops.size(); ++i) {
    const stead::TxnOpResult& answer = result.responses[i];
    const std::string op = stead::ctl::FormatTxnOp(ops[i]);
    switch (answer.kind) {
      case stead::TxnOp::Kind::kPut:
        std::printf("%s: OK\n", op.c_str());
        break;
      case stead::TxnOp::Kind::kDelete:
        std::printf("%s: %lld deleted\n", op.c_str(), static_cast<long long>(answer.deleted));
        break;
      case stead::TxnOp::Kind::kGet:
        std::printf("%s: %zu key%s%s\n", op.c_str(), answer.range.kvs.size(),
                    answer.range.kvs.size() == 1 ? "" : "s", answer.range.more ? " (more)" : "");
        for (const stead::KeyValue& kv : answer.range.kvs) PrintKeyValue(kv);
        break;
    }
  }
}

int Txn(stead::Client& client, const Flags& flags) {
  if (flags.args.size() != 1) {
    return Fail(kExitInvalidArgument,
                "txn takes only --if, --then and --else flags; quote each condition and "
                "operation (see steadctl txn --help)");
  }
  absl::StatusOr<stead::TxnRequest> request = stead::ctl::ParseTxn(
      flags.txn_ifs, flags.txn_thens, flags.txn_elses, [](const std::string& path) {
        return stead::ctl::ReadValueInput(path, "--value-file=" + path);
      });
  if (!request.ok()) return Fail(kExitInvalidArgument, std::string(request.status().message()));
  absl::StatusOr<stead::TxnResult> result = client.Txn(*request, {.timeout = flags.timeout});
  if (!result.ok()) return FailStatus(result.status());
  PrintTxnResult(flags, result->succeeded ? request->success : request->failure, *result);
  return result->succeeded ? kExitOk : kExitFailedCompare;
}

// The member of `members` that `who` designates: a member name, an ordinal (a number
// below 65536; member ids are random 64-bit numbers) or an id (a larger number, or 0x
// hex). NotFound when no member matches.
absl::StatusOr<stead::Member> FindMemberIn(const std::vector<stead::Member>& members,
                                           const std::string& who) {
  uint64_t number = 0;
  const bool is_number = absl::StartsWith(who, "0x") ? absl::SimpleHexAtoi(who.substr(2), &number)
                                                     : absl::SimpleAtoi(who, &number);
  const bool is_ordinal = is_number && !absl::StartsWith(who, "0x") && number < 65536;
  for (const stead::Member& m : members) {
    if (is_ordinal ? OrdinalOf(m.name) == static_cast<int>(number)
                   : (is_number ? m.id == number : m.name == who)) {
      return m;
    }
  }
  return absl::NotFoundError(absl::StrCat("no member ", is_ordinal ? "with ordinal " : "", who,
                                          " (see steadctl member list)"));
}

// FindMemberIn, looked up in the member list.
absl::StatusOr<stead::Member> FindMember(stead::Client& client, const Flags& flags,
                                         const std::string& who) {
  absl::StatusOr<std::vector<stead::Member>> members =
      client.MemberList({.timeout = flags.timeout});
  if (!members.ok()) return members.status();
  return FindMemberIn(*members, who);
}

void PrintPromotion(const Flags& flags, const std::string& name,
                    const stead::MemberPromoteResult& result) {
  if (flags.output == "json") {
    PrintJson({{"members", MembersJson(result.members)}, {"already_voter", result.already_voter}});
    return;
  }
  std::printf("%s %s\n", name.c_str(),
              result.already_voter ? "is already a voter" : "is now a voter");
  PrintMembers(flags, result.members);
}

int MemberCommand(stead::Client& client, const Flags& flags) {
  const std::string sub = flags.args.size() >= 2 ? flags.args[1] : "";
  if (sub == "list" && flags.args.size() == 2) {
    absl::StatusOr<std::vector<stead::Member>> members = client.MemberList({.timeout = flags.timeout});
    if (!members.ok()) return FailStatus(members.status());
    PrintMembers(flags, *members);
    return kExitOk;
  }
  if (sub == "add") {
    if (flags.args.size() != 3) {
      return Fail(kExitInvalidArgument, "member add needs NAME (see steadctl member add --help)");
    }
    const std::string& name = flags.args[2];
    return Fail(kExitFailedPrecondition,
                absl::StrCat("member add changes nothing: members add themselves. Start ", name,
                             " with empty volumes (scale the StatefulSet up, or run stead --name=",
                             name, " --peers=...); it joins as a learner and becomes a voter once "
                             "caught up (see steadctl member add --help)"));
  }
  if ((sub == "remove" || sub == "promote") && flags.args.size() == 3) {
    absl::StatusOr<stead::Member> member = FindMember(client, flags, flags.args[2]);
    if (!member.ok()) return FailStatus(member.status());
    if (sub == "promote") {
      absl::StatusOr<stead::MemberPromoteResult> promoted =
          client.MemberPromote(member->name, {.timeout = flags.timeout});
      if (!promoted.ok()) return FailStatus(promoted.status());
      PrintPromotion(flags, member->name, *promoted);
      return kExitOk;
    }
    absl::StatusOr<std::vector<stead::Member>> members =
        client.MemberRemoveById(member->id, {.timeout = flags.timeout});
    if (!members.ok()) return FailStatus(members.status());
    PrintMembers(flags, *members);
    return kExitOk;
  }
  return Fail(kExitInvalidArgument,
              "member needs 'list', 'remove WHO', 'promote WHO' or 'add NAME' "
              "(see steadctl member --help)");
}

void PrintTransfer(const Flags& flags, const stead::LeaderTransferResult& result) {
  const bool moved = result.leader.id != result.previous_leader.id;
  if (flags.output == "json") {
    PrintJson({{"previous_leader", MemberJson(result.previous_leader)},
               {"leader", MemberJson(result.leader)},
               {"moved", moved}});
  } else if (moved) {
    std::printf("%s is the leader (was %s)\n", result.leader.name.c_str(),
                result.previous_leader.name.c_str());
  } else {
    std::printf("%s is the leader already\n", result.leader.name.c_str());
  }
}

// `leader transfer --from` hands over at most this often in one run: more than once only
// when leadership came back to the --from member (see TransferFrom).
constexpr int kMaxTransfersFrom = 3;
// How long `leader transfer --from` waits before it asks again for the member list when
// the answering member knows no leader (an election is under way).
constexpr absl::Duration kNoLeaderRetry = absl::Milliseconds(100);

// leader transfer --from=WHO: hands leadership away from WHO (to --to, or to whichever
// voter the leader chooses) when the member list shows WHO leading; otherwise prints
// that nothing was done and exits 0. The whole run, retries included, takes at most
// --timeout. The list and the handover are two requests: if leadership moved in
// between, the handover starts from the leader of the moment. Without --to that leader
// may choose WHO itself, so the check runs again after each handover; with --to (never
// WHO) a retried handover cannot land on WHO.
int TransferFrom(stead::Client& client, const Flags& flags) {
  const absl::Time deadline = absl::Now() + flags.timeout;
  int transfers = 0;
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return Fail(kExitUnavailable, absl::StrCat("--timeout passed before a leader other than ",
                                                 flags.from, " was known"));
    }
    absl::StatusOr<std::vector<stead::Member>> members = client.MemberList({.timeout = left});
    if (!members.ok()) return FailStatus(members.status());
    absl::StatusOr<stead::Member> from = FindMemberIn(*members, flags.from);
    if (!from.ok()) return FailStatus(from.status());
    std::string to;
    if (!flags.to.empty()) {
      absl::StatusOr<stead::Member> named = FindMemberIn(*members, flags.to);
      if (!named.ok()) return FailStatus(named.status());
      if (named->id == from->id) {
        return Fail(kExitInvalidArgument, absl::StrCat("--to and --from both name ", from->name));
      }
      to = named->name;
    }
    auto leader = std::find_if(members->begin(), members->end(),
                               [](const stead::Member& m) { return m.is_leader; });
    if (leader == members->end()) {
      absl::SleepFor(std::min(kNoLeaderRetry, left));
      continue;
    }
    if (leader->id != from->id) {
      if (flags.output == "json") {
        PrintTransfer(flags, {.previous_leader = *leader, .leader = *leader});
      } else {
        std::printf("%s is not the leader (%s is): nothing done\n", from->name.c_str(),
                    leader->name.c_str());
      }
      return kExitOk;
    }
    if (transfers == kMaxTransfersFrom) {
      return Fail(kExitUnavailable,
                  absl::StrCat(from->name, " still leads after ", kMaxTransfersFrom, " handovers"));
    }
    ++transfers;
    // Never a zero timeout: that would mean the client's default.
    const absl::Duration transfer_timeout = std::max(deadline - absl::Now(), absl::Milliseconds(1));
    absl::StatusOr<stead::LeaderTransferResult> result =
        client.LeaderTransfer(to, {.timeout = transfer_timeout});
    if (!result.ok()) return FailStatus(result.status());
    if (result->leader.id != from->id) {
      PrintTransfer(flags, *result);
      return kExitOk;
    }
  }
}

int LeaderCommand(stead::Client& client, const Flags& flags) {
  if (flags.args.size() != 2 || flags.args[1] != "transfer") {
    return Fail(kExitInvalidArgument,
                "leader needs 'transfer [--to NAME|ORDINAL|ID] [--from NAME|ORDINAL|ID]' "
                "(see steadctl leader transfer --help)");
  }
  if (!flags.from.empty()) return TransferFrom(client, flags);
  std::string to;
  if (!flags.to.empty()) {
    absl::StatusOr<stead::Member> member = FindMember(client, flags, flags.to);
    if (!member.ok()) return FailStatus(member.status());
    to = member->name;
  }
  absl::StatusOr<stead::LeaderTransferResult> result =
      client.LeaderTransfer(to, {.timeout = flags.timeout});
  if (!result.ok()) return FailStatus(result.status());
  PrintTransfer(flags, *result);
  return kExitOk;
}

struct StatusRow {
  stead::Member member;
  std::string readiness;  // ready, not-ready, unreachable
  std::string term, commit, applied;  // from /metrics; empty when unknown
  std::string lag;  // the leader's commit index minus this member's applied index
};

int ClusterCommand(stead::Client& client, const Flags& flags) {
  if (flags.args.size() != 2 || (flags.args[1] != "status" && flags.args[1] != "health")) {
    return Fail(kExitInvalidArgument, "cluster needs 'status' or 'health' (see steadctl cluster --help)");
  }
  const bool health = flags.args[1] == "health";
  absl::StatusOr<std::vector<stead::Member>> members = client.MemberList({.timeout = flags.timeout});
  if (!members.ok()) return FailStatus(members.status());
  std::sort(members->begin(), members->end(),
            [](const stead::Member& a, const stead::Member& b) { return a.name < b.name; });
  bool all_ready = true;
  std::vector<StatusRow> rows;
  std::string leader_commit;
  for (const stead::Member& m : *members) {
    StatusRow row;
    row.member = m;
    std::string host;
    int port = 0;
    std::optional<std::pair<int, std::string>> ready, metrics;
    if (HttpAddressOf(m, flags.http_port_offset, &host, &port)) {
      ready = HttpGet(host, port, "/readyz", absl::Seconds(2), flags.tls);
      if (!health) metrics = HttpGet(host, port, "/metrics", absl::Seconds(2), flags.tls);
    }
    const bool is_ready = ready.has_value() && ready->first == 200;
    all_ready = all_ready && is_ready;
    row.readiness = !ready.has_value() ? "unreachable" : (is_ready ? "ready" : "not-ready");
    const std::string body = metrics.has_value() && metrics->first == 200 ? metrics->second : "";
    row.term = MetricValue(body, "stead_raft_term");
    row.commit = MetricValue(body, "stead_raft_commit_index");
    row.applied = MetricValue(body, "stead_raft_applied_index");
    if (m.is_leader) leader_commit = row.commit;
    rows.push_back(std::move(row));
  }
  for (StatusRow& row : rows) {
    double commit = 0, applied = 0;
    if (absl::SimpleAtod(leader_commit, &commit) && absl::SimpleAtod(row.applied, &applied)) {
      row.lag = absl::StrCat(static_cast<int64_t>(std::max(0.0, commit - applied)));
    }
  }
  auto or_unknown = [](const std::string& s) { return s.empty() ? std::string("?") : s; };
  // A number from /metrics, or null when unknown.
  auto json_number = [](const std::string& s) {
    double number = 0;
    return absl::SimpleAtod(s, &number) ? Json(static_cast<int64_t>(number)) : Json();
  };
  if (flags.output == "json") {
    Json json_rows = Json::array();
    for (const StatusRow& r : rows) {
      const stead::Member& m = r.member;
      Json row;
      if (health) {
        SetBytes(row, "name", m.name);
        SetBytes(row, "client_address", m.client_address);
      } else {
        row = MemberJson(m);
        row["ordinal"] = OrdinalOf(m.name);
        row["term"] = json_number(r.term);
        row["commit_index"] = json_number(r.commit);
        row["applied_index"] = json_number(r.applied);
        row["lag"] = json_number(r.lag);
      }
      row["health"] = r.readiness;
      json_rows.push_back(std::move(row));
    }
    Json json = {{"members", std::move(json_rows)}};
    if (health) json["healthy"] = all_ready;
    PrintJson(json);
  } else if (health) {
    std::printf("%-12s  %-22s  %s\n", "NAME", "CLIENT", "HEALTH");
    for (const StatusRow& r : rows) {
      std::printf("%-12s  %-22s  %s\n", r.member.name.c_str(), r.member.client_address.c_str(),
                  r.readiness.c_str());
    }
  } else {
    std::printf("%-12s  %7s  %-16s  %-8s  %-22s  %6s  %10s  %10s  %6s  %s\n", "NAME", "ORDINAL", "ID",
                "ROLE", "CLIENT", "TERM", "COMMIT", "APPLIED", "LAG", "HEALTH");
    for (const StatusRow& r : rows) {
      const stead::Member& m = r.member;
      std::printf("%-12s  %7d  %016llx  %-8s  %-22s  %6s  %10s  %10s  %6s  %s\n", m.name.c_str(),
                  OrdinalOf(m.name), static_cast<unsigned long long>(m.id), Role(m).c_str(),
                  m.client_address.c_str(), or_unknown(r.term).c_str(), or_unknown(r.commit).c_str(),
                  or_unknown(r.applied).c_str(), or_unknown(r.lag).c_str(), r.readiness.c_str());
    }
  }
  return health && !all_ready ? kExitUnavailable : kExitOk;
}

int SnapshotCommand(stead::Client& client, const Flags& flags) {
  stead::ctl::SnapshotFlags snapshot;
  snapshot.args = flags.args;
  snapshot.json = flags.output == "json";
  snapshot.endpoint = flags.endpoint;
  snapshot.client = &client;
  snapshot.tls = flags.tls;
  snapshot.force = flags.force;
  snapshot.data_dir = flags.data_dir;
  snapshot.wal_dir = flags.wal_dir;
  snapshot.name = flags.name;
  snapshot.peer_addr = flags.peer_addr;
  snapshot.client_addr = flags.client_addr;
  const absl::Status status = stead::ctl::RunSnapshot(snapshot);
  return status.ok() ? kExitOk : FailStatus(status);
}

int EndpointCommand(stead::Client& client, const Flags& flags) {
  if (flags.args.size() != 2 || flags.args[1] != "hash") {
    return Fail(kExitInvalidArgument, "endpoint needs 'hash' (see steadctl endpoint --help)");
  }
  std::vector<std::string> endpoints = absl::StrSplit(flags.endpoints, ',', absl::SkipWhitespace());
  if (flags.cluster) {
    absl::StatusOr<std::vector<stead::Member>> members = client.MemberList({.timeout = flags.timeout});
    if (!members.ok()) return FailStatus(members.status());
    std::sort(members->begin(), members->end(),
              [](const stead::Member& a, const stead::Member& b) { return a.name < b.name; });
    endpoints.clear();
    for (const stead::Member& m : *members) endpoints.push_back(m.client_address);
  }
  int exit_code = kExitOk;
  Json json_rows = Json::array();
  if (flags.output != "json") {
    std::printf("%-22s  %-16s  %-16s  %10s  %10s  %10s\n", "ENDPOINT", "ID", "HASH", "APPLIED",
                "REVISION", "KEYS");
  }
  for (const std::string& endpoint : endpoints) {
    Json row;
    SetBytes(row, "endpoint", endpoint);
    absl::StatusOr<stead::ContentHash> hash = client.Hash(endpoint, {.timeout = flags.timeout});
    if (!hash.ok()) {
      if (exit_code == kExitOk) exit_code = ExitCodeOf(hash.status());
      std::fprintf(stderr, "steadctl: %s: %s\n", endpoint.c_str(), hash.status().ToString().c_str());
      SetBytes(row, "error", hash.status().ToString());
      json_rows.push_back(std::move(row));
      continue;
    }
    const std::string hex = absl::StrFormat("%016x", hash->hash);
    row["member_id"] = hash->member_id;
    row["member_id_hex"] = absl::StrFormat("%016x", hash->member_id);
    row["hash"] = hash->hash;
    row["hash_hex"] = hex;
    row["applied_index"] = hash->applied_index;
    row["revision"] = hash->revision;
    row["key_count"] = hash->key_count;
    json_rows.push_back(std::move(row));
    if (flags.output != "json") {
      std::printf("%-22s  %016llx  %s  %10llu  %10lld  %10llu\n", endpoint.c_str(),
                  static_cast<unsigned long long>(hash->member_id), hex.c_str(),
                  static_cast<unsigned long long>(hash->applied_index),
                  static_cast<long long>(hash->revision),
                  static_cast<unsigned long long>(hash->key_count));
    }
  }
  if (flags.output == "json") PrintJson({{"endpoints", std::move(json_rows)}});
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string(argv[1]) == "--version") {
    std::printf("steadctl %s\n", STEAD_VERSION);
    return kExitOk;
  }
  absl::StatusOr<Flags> flags = ParseFlags(argc, argv);
  if (!flags.ok()) return Fail(kExitInvalidArgument, std::string(flags.status().message()));
  if (flags->args.empty()) {
    std::fputs(kMainHelp, flags->help ? stdout : stderr);
    return flags->help ? kExitOk : kExitInvalidArgument;
  }
  const std::string& command = flags->args[0];
  const std::string help_key = command == "delete" ? "del" : (command == "range" ? "scan" : command);
  auto help = CommandHelp().find(help_key);
  if (help == CommandHelp().end()) {
    return Fail(kExitInvalidArgument, absl::StrCat("unknown command '", command, "' (see steadctl --help)"));
  }
  if (flags->help) {
    // `member promote --help` and the like: the subcommand's own page when it has one.
    if (flags->args.size() >= 2) {
      auto sub_help = CommandHelp().find(absl::StrCat(help_key, " ", flags->args[1]));
      if (sub_help != CommandHelp().end()) help = sub_help;
    }
    std::fputs(help->second.c_str(), stdout);
    return kExitOk;
  }
  if (!flags->value_file.empty() && help_key != "put") {
    return Fail(kExitInvalidArgument,
                "--value-file is for put only (in txn: put KEY --value-file=PATH)");
  }
  stead::ClientOptions options;
  options.endpoints = absl::StrSplit(flags->endpoints, ',', absl::SkipWhitespace());
  options.default_timeout = flags->timeout;
  options.attempt_timeout = std::min(flags->timeout, absl::Seconds(2));
  options.tls = flags->tls;
  if (!flags->user.empty()) {
    options.user = flags->user;
    absl::StatusOr<std::string> password = stead::ctl::ReadPassword(
        flags->password_file, absl::StrCat("Password of ", flags->user, ": "));
    if (!password.ok()) return FailStatus(password.status());
    options.password = *std::move(password);
  } else if (!flags->password_file.empty()) {
    return Fail(kExitInvalidArgument, "--password-file needs --user");
  }
  absl::StatusOr<std::unique_ptr<stead::Client>> client = stead::Client::Create(options);
  if (!client.ok()) return FailStatus(client.status());
  if (help_key == "get") return Get(**client, *flags);
  if (help_key == "put") return Put(**client, *flags);
  if (help_key == "del") return Del(**client, *flags);
  if (help_key == "scan") return Scan(**client, *flags);
  if (help_key == "txn") return Txn(**client, *flags);
  if (help_key == "watch") return Watch(**client, *flags);
  if (help_key == "member") return MemberCommand(**client, *flags);
  if (help_key == "leader") return LeaderCommand(**client, *flags);
  if (help_key == "endpoint") return EndpointCommand(**client, *flags);
  if (help_key == "snapshot") return SnapshotCommand(**client, *flags);
  if (help_key == "user" || help_key == "role" || help_key == "auth") {
    stead::ctl::AuthFlags auth;
    auth.args = flags->args;
    auth.json = flags->output == "json";
    auth.timeout = flags->timeout;
    auth.range_end = flags->range_end;
    auth.prefix = flags->prefix;
    auth.new_password_file = flags->new_password_file;
    auth.no_password = flags->no_password;
    const absl::Status status = stead::ctl::RunAuthCommand(**client, auth);
    return status.ok() ? kExitOk : FailStatus(status);
  }
  return ClusterCommand(**client, *flags);
}
