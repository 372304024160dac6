// stead-bench: a closed-loop load generator for stead over stead::Client, measuring
// stead exactly as ../shared/bench/etcdload measures etcd: the same flags, the same
// output and the same final machine-readable line
//   RESULT op=put serializable=0 target=leader endpoints=... clients=64 ... p99_ms=...
//
// Each of --clients logical clients keeps exactly one request outstanding: when its
// answer arrives the latency is recorded and the next request is sent. The requests
// share --conns TCP connections (spread over the target members) and --threads I/O
// threads of one stead::Client. A progress line goes to stderr once a second.
//
// Only loopback endpoints (127.0.0.0/8, localhost, [::1]) are accepted.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "stead/client.h"

namespace {

using SteadyClock = std::chrono::steady_clock;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             SteadyClock::now().time_since_epoch())
      .count();
}

struct Options {
  std::vector<std::string> endpoints{"127.0.0.1:2479"};
  int clients = 1;
  int conns = 1;
  int threads = 1;
  int64_t ops = 0;         // total requests; 0: run for `seconds`
  double seconds = 0;      // measured duration
  double warmup = 0;       // seconds before the measured window (duration mode only)
  std::string op = "put";  // put | get
  int value_size = 256;
  int64_t key_space = 100000;
  int key_size = 8;
  std::string key_prefix;
  std::string key_dist = "uniform";  // uniform | seq
  bool serializable = false;
  std::string target;  // leader | rr; default leader for put, rr for get
  double timeout_s = 30;
  uint64_t seed = 1;
  stead::ClientTlsOptions tls;  // --cacert, --cert, --key
};

[[noreturn]] void Usage(int exit_code) {
  std::fprintf(exit_code ? stderr : stdout,
      "stead-bench: closed-loop stead load generator (Put/Get over stead::Client)\n"
      "  --endpoints=H:P[,H:P...]  loopback only (default 127.0.0.1:2479)\n"
      "  --op=put|get              operation (default put); get = read of one key\n"
      "  --clients=N               concurrent closed-loop clients, 1 outstanding request each (default 1)\n"
      "  --conns=N                 TCP connections shared by the clients (default 1)\n"
      "  --threads=N               I/O threads of the client (default 1)\n"
      "  --ops=N                   stop after N total requests, or\n"
      "  --seconds=S               run for S seconds (after --warmup=W seconds, not measured)\n"
      "  --value-size=B            put value size in bytes (default 256)\n"
      "  --key-space=N             keys are drawn from [0,N) (default 100000)\n"
      "  --key-size=B              key length incl. prefix, zero-padded decimal (default 8)\n"
      "  --key-prefix=S            key prefix (default none)\n"
      "  --key-dist=uniform|seq    uniform random keys, or seq = 0,1,2,... (use to preload)\n"
      "  --serializable            get: serializable (member-local) instead of linearizable read\n"
      "  --target=leader|rr        leader: all conns to the Raft leader (found with a member list);\n"
      "                            rr: conns round-robin over all endpoints. Default leader for put, rr for get\n"
      "  --timeout=S               per-request deadline (default 30)\n"
      "  --seed=N                  RNG seed (default 1)\n"
      "  --cacert=FILE             TLS: CA certificates of the members' client ports (TLS is on\n"
      "                            with any of these three)\n"
      "  --cert=FILE --key=FILE    TLS: client certificate and key (--client-cert-auth)\n");
  std::exit(exit_code);
}

bool ParseFlag(const std::string& arg, const char* name, std::string* value) {
  const std::string flag = std::string("--") + name;
  if (arg == flag) {
    value->clear();
    return true;
  }
  if (arg.rfind(flag + "=", 0) == 0) {
    *value = arg.substr(flag.size() + 1);
    return true;
  }
  return false;
}

std::string NormalizeEndpoint(std::string endpoint) {
  for (const char* scheme : {"http://", "https://"}) {
    if (endpoint.rfind(scheme, 0) == 0) endpoint = endpoint.substr(std::strlen(scheme));
  }
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  const std::string host = !endpoint.empty() && endpoint[0] == '['
                               ? endpoint.substr(0, endpoint.find(']') + 1)
                               : endpoint.substr(0, endpoint.rfind(':'));
  if (host != "localhost" && host != "[::1]" && host.rfind("127.", 0) != 0) {
    std::fprintf(stderr, "refusing non-loopback endpoint '%s' (only 127.0.0.0/8, localhost, [::1])\n",
                 endpoint.c_str());
    std::exit(2);
  }
  if (endpoint.find(':', host.size()) == std::string::npos) endpoint += ":2479";
  return endpoint;
}

template <typename T>
T Number(const std::string& flag, const std::string& text) {
  T value{};
  bool ok = false;
  if constexpr (std::is_floating_point_v<T>) {
    ok = absl::SimpleAtod(text, &value);
  } else {
    ok = absl::SimpleAtoi(text, &value);
  }
  if (!ok) {
    std::fprintf(stderr, "--%s: '%s' is not a number\n", flag.c_str(), text.c_str());
    Usage(2);
  }
  return value;
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::string v;
    auto need = [&](const char* name) {
      if (!v.empty()) return;
      if (i + 1 >= argc) {
        std::fprintf(stderr, "missing value for --%s\n", name);
        Usage(2);
      }
      v = argv[++i];
    };
    if (arg == "-h" || arg == "--help") Usage(0);
    else if (ParseFlag(arg, "endpoints", &v)) {
      need("endpoints");
      o.endpoints.clear();
      for (absl::string_view e : absl::StrSplit(v, ',', absl::SkipEmpty())) {
        o.endpoints.push_back(NormalizeEndpoint(std::string(e)));
      }
    }
    else if (ParseFlag(arg, "cacert", &v)) { need("cacert"); o.tls.trusted_ca_file = v; o.tls.enabled = true; }
    else if (ParseFlag(arg, "cert", &v)) { need("cert"); o.tls.cert_file = v; o.tls.enabled = true; }
    else if (ParseFlag(arg, "key", &v)) { need("key"); o.tls.key_file = v; o.tls.enabled = true; }
    else if (ParseFlag(arg, "clients", &v)) { need("clients"); o.clients = Number<int>("clients", v); }
    else if (ParseFlag(arg, "conns", &v)) { need("conns"); o.conns = Number<int>("conns", v); }
    else if (ParseFlag(arg, "threads", &v)) { need("threads"); o.threads = Number<int>("threads", v); }
    else if (ParseFlag(arg, "ops", &v)) { need("ops"); o.ops = Number<int64_t>("ops", v); }
    else if (ParseFlag(arg, "seconds", &v)) { need("seconds"); o.seconds = Number<double>("seconds", v); }
    else if (ParseFlag(arg, "warmup", &v)) { need("warmup"); o.warmup = Number<double>("warmup", v); }
    else if (ParseFlag(arg, "op", &v)) { need("op"); o.op = v; }
    else if (ParseFlag(arg, "value-size", &v)) { need("value-size"); o.value_size = Number<int>("value-size", v); }
    else if (ParseFlag(arg, "key-space", &v)) { need("key-space"); o.key_space = Number<int64_t>("key-space", v); }
    else if (ParseFlag(arg, "key-size", &v)) { need("key-size"); o.key_size = Number<int>("key-size", v); }
    else if (ParseFlag(arg, "key-prefix", &v)) { need("key-prefix"); o.key_prefix = v; }
    else if (ParseFlag(arg, "key-dist", &v)) { need("key-dist"); o.key_dist = v; }
    else if (arg == "--serializable" || arg == "--serializable=true") o.serializable = true;
    else if (arg == "--serializable=false") o.serializable = false;
    else if (ParseFlag(arg, "target", &v)) { need("target"); o.target = v; }
    else if (ParseFlag(arg, "timeout", &v)) { need("timeout"); o.timeout_s = Number<double>("timeout", v); }
    else if (ParseFlag(arg, "seed", &v)) { need("seed"); o.seed = Number<uint64_t>("seed", v); }
    else {
      std::fprintf(stderr, "unknown argument: %s\n", arg.c_str());
      Usage(2);
    }
  }
  if (o.op == "range") o.op = "get";
  if (o.op != "put" && o.op != "get") { std::fprintf(stderr, "--op must be put or get\n"); Usage(2); }
  if (o.target.empty()) o.target = o.op == "put" ? "leader" : "rr";
  if (o.target != "leader" && o.target != "rr") { std::fprintf(stderr, "--target must be leader or rr\n"); Usage(2); }
  if (o.key_dist != "uniform" && o.key_dist != "seq") { std::fprintf(stderr, "--key-dist must be uniform or seq\n"); Usage(2); }
  if (o.clients < 1 || o.conns < 1 || o.threads < 1 || o.key_space < 1 || o.value_size < 0 ||
      o.timeout_s <= 0) {
    Usage(2);
  }
  if (o.ops <= 0 && o.seconds <= 0) o.seconds = 10;
  if (o.ops > 0 && o.seconds > 0) { std::fprintf(stderr, "give --ops or --seconds, not both\n"); Usage(2); }
  o.conns = std::min(o.conns, o.clients);
  o.threads = std::min(o.threads, o.clients);
  if (o.endpoints.empty()) Usage(2);
  return o;
}

// The endpoint of the leader, from a member list; empty with a reason in `info`.
std::string FindLeader(const std::vector<std::string>& endpoints,
                       const stead::ClientTlsOptions& tls, std::string* info) {
  stead::ClientOptions options;
  options.endpoints = endpoints;
  options.tls = tls;
  options.route_to_leader = false;
  absl::StatusOr<std::unique_ptr<stead::Client>> client = stead::Client::Create(options);
  if (!client.ok()) {
    *info = client.status().ToString();
    return "";
  }
  // Bounded: a fresh cluster may take a few elections to settle.
  for (int attempt = 0; attempt < 50; ++attempt) {
    absl::StatusOr<std::vector<stead::Member>> members =
        (*client)->MemberList({.timeout = absl::Seconds(3)});
    if (!members.ok()) {
      *info = members.status().ToString();
    } else {
      for (const stead::Member& member : *members) {
        if (!member.is_leader) continue;
        if (std::find(endpoints.begin(), endpoints.end(), member.client_address) == endpoints.end()) {
          *info = "leader " + member.name + " at " + member.client_address + " is not among the endpoints";
          return "";
        }
        *info = member.client_address + " is leader (" + member.name + ")";
        return member.client_address;
      }
      *info = "no member reports a leader";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return "";
}

struct Shared {
  const Options* options = nullptr;
  stead::Client* client = nullptr;
  std::string value;
  int64_t start_ns = 0;         // when the clients were released
  int64_t window_start_ns = 0;  // the measured window (duration mode)
  int64_t window_end_ns = 0;
  std::atomic<int64_t> issued{0};     // ops mode and seq keys
  std::atomic<int64_t> completed{0};  // for the progress line
  std::atomic<int64_t> failed{0};
  std::atomic<int> active{0};         // clients still issuing
};

// One logical client. Its fields are touched by one request's completion at a time,
// and each completion happens after the previous issue, so they need no lock.
struct LogicalClient {
  Shared* shared = nullptr;
  std::mt19937_64 rng;
  std::string key;
  int64_t start_ns = 0;
  std::vector<int64_t> latencies_ns;
  int64_t ok = 0;
  int64_t errors = 0;
  int64_t not_found = 0;
  int64_t first_start_ns = INT64_MAX;
  int64_t last_done_ns = 0;
  std::map<std::string, int64_t> error_codes;
  std::string first_error;
};

// Builds the next key; false when the run is over.
bool NextKey(LogicalClient& c, int64_t now) {
  const Options& o = *c.shared->options;
  int64_t index = 0;
  if (o.ops > 0) {
    index = c.shared->issued.fetch_add(1, std::memory_order_relaxed);
    if (index >= o.ops) return false;
    if (o.key_dist == "uniform") index = static_cast<int64_t>(c.rng() % static_cast<uint64_t>(o.key_space));
    else index %= o.key_space;
  } else {
    if (now >= c.shared->window_end_ns) return false;
    if (o.key_dist == "seq") index = c.shared->issued.fetch_add(1, std::memory_order_relaxed) % o.key_space;
    else index = static_cast<int64_t>(c.rng() % static_cast<uint64_t>(o.key_space));
  }
  char number[32];
  const int width = std::max(1, o.key_size - static_cast<int>(o.key_prefix.size()));
  std::snprintf(number, sizeof number, "%0*" PRId64, width, index);
  c.key.assign(o.key_prefix);
  c.key.append(number);
  return true;
}

void Issue(LogicalClient* c);

void Record(LogicalClient* c, const absl::Status& status, bool found) {
  const int64_t now = NowNs();
  const Options& o = *c->shared->options;
  c->shared->completed.fetch_add(1, std::memory_order_relaxed);
  if (!status.ok()) {
    c->shared->failed.fetch_add(1, std::memory_order_relaxed);
    ++c->errors;
    ++c->error_codes[absl::StatusCodeToString(status.code())];
    if (c->first_error.empty()) c->first_error = status.ToString();
  } else if (o.ops > 0 || (c->start_ns >= c->shared->window_start_ns && now <= c->shared->window_end_ns)) {
    ++c->ok;
    if (!found) ++c->not_found;
    c->latencies_ns.push_back(now - c->start_ns);
    c->first_start_ns = std::min(c->first_start_ns, c->start_ns);
    c->last_done_ns = std::max(c->last_done_ns, now);
  }
  Issue(c);
}

void Issue(LogicalClient* c) {
  const Options& o = *c->shared->options;
  if (!NextKey(*c, NowNs())) {
    c->shared->active.fetch_sub(1);
    return;
  }
  c->start_ns = NowNs();
  const absl::Duration timeout = absl::Seconds(o.timeout_s);
  if (o.op == "put") {
    c->shared->client->PutAsync(c->key, c->shared->value, {.timeout = timeout},
                                [c](absl::Status status) { Record(c, status, true); });
  } else {
    c->shared->client->GetAsync(
        c->key, {.serializable = o.serializable, .timeout = timeout},
        [c](absl::StatusOr<std::optional<std::string>> value) {
          Record(c, value.status(), value.ok() && value->has_value());
        });
  }
}

double Percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]) / 1e6;
}

double CpuSeconds() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = ParseArgs(argc, argv);

  std::vector<std::string> used;
  std::string leader_info;
  if (o.target == "leader") {
    const std::string leader = FindLeader(o.endpoints, o.tls, &leader_info);
    if (leader.empty()) {
      std::fprintf(stderr, "could not find the leader among the endpoints: %s\n", leader_info.c_str());
      return 1;
    }
    used.push_back(leader);
  } else {
    used = o.endpoints;
  }

  stead::ClientOptions client_options;
  client_options.endpoints = used;
  // --conns connections spread over the target members (rounded up per member).
  client_options.connections_per_endpoint =
      (o.conns + static_cast<int>(used.size()) - 1) / static_cast<int>(used.size());
  client_options.io_threads = o.threads;
  client_options.route_to_leader = o.target == "leader";
  client_options.default_timeout = absl::Seconds(o.timeout_s);
  client_options.attempt_timeout = absl::Seconds(o.timeout_s);
  client_options.tls = o.tls;
  absl::StatusOr<std::unique_ptr<stead::Client>> client = stead::Client::Create(client_options);
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", client.status().ToString().c_str());
    return 1;
  }

  Shared shared;
  shared.options = &o;
  shared.client = client->get();
  {
    std::mt19937_64 value_rng(o.seed ^ 0x9e3779b97f4a7c15ULL);
    shared.value.resize(static_cast<size_t>(o.value_size));
    for (char& ch : shared.value) ch = static_cast<char>('a' + value_rng() % 26);
  }
  std::vector<std::unique_ptr<LogicalClient>> clients;
  for (int i = 0; i < o.clients; ++i) {
    auto c = std::make_unique<LogicalClient>();
    c->shared = &shared;
    c->rng.seed(o.seed * 1000003ULL + static_cast<uint64_t>(i));
    c->latencies_ns.reserve(1 << 14);
    clients.push_back(std::move(c));
  }

  const std::string target_description =
      o.target == "leader" ? leader_info : "round-robin over all endpoints";
  std::fprintf(stderr,
               "stead-bench: op=%s%s clients=%d conns=%d threads=%d value=%dB key_space=%" PRId64
               " target=%s\n",
               o.op.c_str(),
               o.op == "get" ? (o.serializable ? "(serializable)" : "(linearizable)") : "",
               o.clients, o.conns, o.threads, o.value_size, o.key_space, target_description.c_str());

  const double cpu_start = CpuSeconds();
  shared.start_ns = NowNs();
  shared.window_start_ns = shared.start_ns + static_cast<int64_t>(o.warmup * 1e9);
  shared.window_end_ns =
      o.ops > 0 ? INT64_MAX : shared.window_start_ns + static_cast<int64_t>(o.seconds * 1e9);
  shared.active = o.clients;
  for (auto& c : clients) Issue(c.get());

  // Progress once a second until every client has finished; bounded by the run's
  // length plus one request timeout (duration mode) as every request ends by then.
  int64_t last_completed = 0;
  int64_t last_ns = shared.start_ns;
  const int64_t give_up_ns = o.ops > 0 ? INT64_MAX
                                       : shared.window_end_ns + static_cast<int64_t>((o.timeout_s + 5) * 1e9);
  while (shared.active.load() > 0 && NowNs() < give_up_ns) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const int64_t now = NowNs();
    if (now - last_ns < 1'000'000'000) continue;
    const int64_t completed = shared.completed.load();
    std::fprintf(stderr, "stead-bench: %6.1fs %s ops=%" PRId64 " rate=%.0f/s errors=%" PRId64 "\n",
                 static_cast<double>(now - shared.start_ns) / 1e9,
                 now < shared.window_start_ns ? "warmup " : "measure", completed,
                 static_cast<double>(completed - last_completed) * 1e9 / static_cast<double>(now - last_ns),
                 shared.failed.load());
    last_completed = completed;
    last_ns = now;
  }
  if (shared.active.load() > 0) {
    std::fprintf(stderr, "stead-bench: %d clients still waiting for an answer; giving up\n",
                 shared.active.load());
    std::fflush(stderr);
    std::_Exit(1);  // their callbacks still reference `clients`
  }
  const int64_t end_ns = NowNs();
  const double cpu_end = CpuSeconds();

  std::vector<int64_t> latencies;
  int64_t ok = 0, errors = 0, not_found = 0, first = INT64_MAX, last = 0;
  std::map<std::string, int64_t> codes;
  std::string first_error;
  for (auto& c : clients) {
    latencies.insert(latencies.end(), c->latencies_ns.begin(), c->latencies_ns.end());
    ok += c->ok;
    errors += c->errors;
    not_found += c->not_found;
    first = std::min(first, c->first_start_ns);
    last = std::max(last, c->last_done_ns);
    for (auto& [code, count] : c->error_codes) codes[code] += count;
    if (first_error.empty()) first_error = c->first_error;
  }
  std::sort(latencies.begin(), latencies.end());
  double elapsed_s = 0;
  if (o.ops > 0) {
    elapsed_s = last > first ? static_cast<double>(last - first) / 1e9 : 0;
  } else {
    elapsed_s = static_cast<double>(std::min(shared.window_end_ns, std::max(last, shared.window_start_ns)) -
                                    shared.window_start_ns) / 1e9;
  }
  if (elapsed_s <= 0) elapsed_s = 1e-9;
  const double ops_per_s = static_cast<double>(ok) / elapsed_s;
  double mean_ms = 0;
  for (int64_t v : latencies) mean_ms += static_cast<double>(v);
  mean_ms = latencies.empty() ? 0 : mean_ms / static_cast<double>(latencies.size()) / 1e6;
  const double wall_s = static_cast<double>(end_ns - shared.start_ns) / 1e9;
  const double cpu_pct = 100.0 * (cpu_end - cpu_start) / wall_s;
  const double max_ms = latencies.empty() ? 0.0 : static_cast<double>(latencies.back()) / 1e6;

  std::printf("ops=%" PRId64 " errors=%" PRId64 " elapsed=%.3fs throughput=%.1f ops/s\n", ok, errors,
              elapsed_s, ops_per_s);
  std::printf("latency ms: mean=%.3f p50=%.3f p90=%.3f p99=%.3f p99.9=%.3f max=%.3f\n", mean_ms,
              Percentile(latencies, 50), Percentile(latencies, 90), Percentile(latencies, 99),
              Percentile(latencies, 99.9), max_ms);
  std::printf("client process CPU: %.0f%% of one core over %.2fs wall\n", cpu_pct, wall_s);
  if (o.op == "get" && not_found > 0) {
    std::printf("note: %" PRId64 " gets found no key (preload the key space)\n", not_found);
  }
  if (errors > 0) {
    std::printf("errors by code:");
    for (auto& [code, count] : codes) std::printf(" %s:%" PRId64, code.c_str(), count);
    std::printf("  first: %s\n", first_error.c_str());
  }
  std::printf("RESULT op=%s serializable=%d target=%s endpoints=%s clients=%d conns=%d threads=%d "
              "value_size=%d key_space=%" PRId64 " ops=%" PRId64 " errors=%" PRId64
              " elapsed_s=%.3f ops_per_s=%.1f mean_ms=%.3f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f "
              "p999_ms=%.3f max_ms=%.3f client_cpu_pct=%.0f\n",
              o.op.c_str(), o.serializable ? 1 : 0, o.target.c_str(), absl::StrJoin(used, ",").c_str(),
              o.clients, o.conns, o.threads, o.value_size, o.key_space, ok, errors, elapsed_s,
              ops_per_s, mean_ms, Percentile(latencies, 50), Percentile(latencies, 90),
              Percentile(latencies, 99), Percentile(latencies, 99.9), max_ms, cpu_pct);
  std::fflush(stdout);
  client->reset();
  if (ok == 0 || errors * 100 > ok + errors) return 1;
  return 0;
}
