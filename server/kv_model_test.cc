// Model test of the key-value state machine. Goal: every response of the real apply
// path (ApplyKvCommand on a RocksDB StateMachine, reads through ReadRange) equals what
// a deliberately naive model computes. Method: many seeds, each a random sequence of
// put, delete (single, range, to the end), range reads (limit, reverse, keys_only,
// count_only, min_revision), transactions with every compare kind, retried and stale
// writes of a few clients, invalid requests, clock jumps (session expiry), restarts
// (clean, or a crash that replays the log), and checkpoints taken and later installed
// as a Raft snapshot is (the log after them then applies again). At the end, the watch
// history replayed from revision 1 must rebuild the same keys. A failure prints the seed.
#include <unistd.h>

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "server/kv_testing.h"
#include "server/watch_hub.h"

namespace stead::server {
namespace {

constexpr int64_t kTtlMs = 2000;
constexpr int kClients = 3;

KvApplyOptions SmallOptions() {
  KvApplyOptions options;
  options.limits.max_key_bytes = 6;
  options.limits.max_value_bytes = 8;
  options.limits.max_request_bytes = 100;
  options.limits.max_txn_ops = 3;
  options.session_ttl = absl::Milliseconds(kTtlMs);
  options.max_expired_sessions_per_command = 1;  // makes the bounded expiry visible
  return options;
}

// ---- The model: plain maps and loops, no cleverness. ----

struct Session {
  uint64_t sequence = 0;
  pb::ClientResponse response;
  int64_t last_seen_ms = 0;
};

struct Model {
  std::map<std::string, pb::KeyValue> kvs;  // keys set
  int64_t revision = 0;
  int64_t log_time_ms = 0;
  std::map<uint64_t, Session> sessions;
};

bool InRange(const std::string& k, const std::string& key, const std::string& end) {
  if (end.empty()) return k == key;
  if (end == std::string(1, '\0')) return k >= key;
  return k >= key && k < end;
}

std::vector<pb::KeyValue> KeysIn(const std::map<std::string, pb::KeyValue>& kvs,
                                 const std::string& key, const std::string& end) {
  std::vector<pb::KeyValue> out;
  for (const auto& [k, kv] : kvs) {
    if (InRange(k, key, end)) out.push_back(kv);
  }
  return out;
}

pb::RangeResponse ModelRange(const std::map<std::string, pb::KeyValue>& kvs,
                             const pb::RangeRequest& r) {
  std::vector<pb::KeyValue> all = KeysIn(kvs, r.key(), r.range_end());
  if (r.reverse() && !r.range_end().empty()) std::reverse(all.begin(), all.end());
  const size_t limit = static_cast<size_t>(r.limit() == 0 ? 10000 : r.limit());
  pb::RangeResponse out;
  const size_t n = std::min(all.size(), limit);
  out.set_count(static_cast<int64_t>(n));
  out.set_more(all.size() > n);
  if (out.more()) {
    if (r.reverse()) {
      out.set_next_range_end(all[n - 1].key());
    } else {
      out.set_next_key(all[n - 1].key() + std::string(1, '\0'));
    }
  }
  if (!r.count_only()) {
    for (size_t i = 0; i < n; ++i) {
      pb::KeyValue kv = all[i];
      if (r.keys_only()) kv.clear_value();
      *out.add_kvs() = kv;
    }
  }
  return out;
}

template <typename T>
bool Holds(pb::Compare::Result result, T actual, T wanted) {
  if (result == pb::Compare::RESULT_EQUAL) return actual == wanted;
  if (result == pb::Compare::RESULT_NOT_EQUAL) return actual != wanted;
  if (result == pb::Compare::RESULT_GREATER) return actual > wanted;
  return actual < wanted;
}

bool ModelCompare(const std::map<std::string, pb::KeyValue>& kvs, const pb::Compare& c) {
  std::vector<pb::KeyValue> in = KeysIn(kvs, c.key(), c.range_end());
  if (c.target() == pb::Compare::TARGET_EXISTS) return Holds(c.result(), !in.empty(), c.exists());
  if (in.empty()) {
    if (c.target() == pb::Compare::TARGET_VALUE) return false;
    in.push_back(pb::KeyValue());
  }
  for (const pb::KeyValue& kv : in) {
    bool ok = false;
    switch (c.target()) {
      case pb::Compare::TARGET_VALUE:
        ok = Holds(c.result(), kv.value(), c.value());
        break;
      case pb::Compare::TARGET_VERSION:
        ok = Holds(c.result(), kv.version(), c.version());
        break;
      case pb::Compare::TARGET_CREATE_REVISION:
        ok = Holds(c.result(), kv.create_revision(), c.create_revision());
        break;
      default:
        ok = Holds(c.result(), kv.mod_revision(), c.mod_revision());
        break;
    }
    if (!ok) return false;
  }
  return true;
}

// Applies one put / delete / range op to `kvs` at `revision` (the write revision).
pb::ResponseOp ModelOp(std::map<std::string, pb::KeyValue>& kvs, const pb::RequestOp& op,
                       int64_t revision) {
  pb::ResponseOp out;
  if (op.has_range()) {
    *out.mutable_range() = ModelRange(kvs, op.range());
  } else if (op.has_put()) {
    auto it = kvs.find(op.put().key());
    pb::KeyValue kv;
    kv.set_key(op.put().key());
    kv.set_value(op.put().value());
    kv.set_mod_revision(revision);
    kv.set_create_revision(it == kvs.end() ? revision : it->second.create_revision());
    kv.set_version(it == kvs.end() ? 1 : it->second.version() + 1);
    out.mutable_put();
    if (op.put().prev_kv() && it != kvs.end()) *out.mutable_put()->mutable_prev_kv() = it->second;
    kvs[kv.key()] = kv;
  } else {
    const pb::DeleteRangeRequest& d = op.delete_range();
    std::vector<pb::KeyValue> doomed = KeysIn(kvs, d.key(), d.range_end());
    out.mutable_delete_range()->set_deleted(static_cast<int64_t>(doomed.size()));
    for (const pb::KeyValue& kv : doomed) {
      if (d.prev_kv()) *out.mutable_delete_range()->add_prev_kvs() = kv;
      kvs.erase(kv.key());
    }
  }
  return out;
}

bool ModelValid(const pb::ClientRequest& r, const KvLimits& limits) {
  auto key_ok = [&](const std::string& k) {
    return !k.empty() && k.size() <= limits.max_key_bytes;
  };
  // The limits count the user's bytes: keys, range ends and values.
  size_t user_bytes = 0;
  auto op_ok = [&](const pb::RequestOp& op) {
    if (op.has_put()) {
      user_bytes += op.put().key().size() + op.put().value().size();
      return key_ok(op.put().key()) && op.put().value().size() <= limits.max_value_bytes;
    }
    if (op.has_delete_range()) {
      user_bytes += op.delete_range().key().size() + op.delete_range().range_end().size();
      return key_ok(op.delete_range().key()) &&
             op.delete_range().range_end().size() <= limits.max_key_bytes;
    }
    user_bytes += op.range().key().size() + op.range().range_end().size();
    return op.has_range() && op.range().key().size() <= limits.max_key_bytes &&
           op.range().range_end().size() <= limits.max_key_bytes;
  };
  if (r.ByteSizeLong() > MaxEncodedRequestBytes(limits)) return false;
  if (r.has_put() || r.has_delete_range()) {
    pb::RequestOp op;
    if (r.has_put()) *op.mutable_put() = r.put();
    if (r.has_delete_range()) *op.mutable_delete_range() = r.delete_range();
    return op_ok(op) && user_bytes <= limits.max_request_bytes;
  }
  const pb::TxnRequest& t = r.txn();
  if (t.compare().empty() && t.success().empty() && t.failure().empty()) return false;
  if (static_cast<size_t>(std::max({t.compare_size(), t.success_size(), t.failure_size()})) >
      limits.max_txn_ops) {
    return false;
  }
  for (const pb::Compare& c : t.compare()) {
    user_bytes += c.key().size() + c.range_end().size() + c.value().size();
    if (!key_ok(c.key()) || c.range_end().size() > limits.max_key_bytes ||
        c.value().size() > limits.max_value_bytes) {
      return false;
    }
  }
  for (const pb::RequestOp& op : t.success()) {
    if (!op_ok(op)) return false;
  }
  for (const pb::RequestOp& op : t.failure()) {
    if (!op_ok(op)) return false;
  }
  return user_bytes <= limits.max_request_bytes;
}

// The model's response to a write (request_id left 0).
pb::ClientResponse ModelWrite(Model& m, const pb::ClientRequest& r, const KvApplyOptions& options) {
  m.log_time_ms = std::max(m.log_time_ms, r.proposed_at_unix_ms());
  // Expire the oldest idle session (at most one per command with SmallOptions).
  std::optional<std::pair<int64_t, uint64_t>> oldest;
  for (const auto& [id, s] : m.sessions) {
    if (s.last_seen_ms < m.log_time_ms - kTtlMs &&
        (!oldest || std::make_pair(s.last_seen_ms, id) < *oldest)) {
      oldest = std::make_pair(s.last_seen_ms, id);
    }
  }
  if (oldest) m.sessions.erase(oldest->second);

  pb::ClientResponse out;
  auto session = m.sessions.find(r.client_id());
  if (r.client_id() != 0 && session != m.sessions.end()) {
    if (r.sequence() == session->second.sequence) return session->second.response;
    if (r.sequence() < session->second.sequence) {
      out.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kFailedPrecondition));
      out.mutable_header()->set_revision(m.revision);
      return out;
    }
  }
  if (!ModelValid(r, options.limits)) {
    out.mutable_error()->set_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
  } else {
    std::map<std::string, pb::KeyValue> after = m.kvs;
    const int64_t revision = m.revision + 1;
    if (r.has_put()) {
      pb::RequestOp op;
      *op.mutable_put() = r.put();
      *out.mutable_put() = ModelOp(after, op, revision).put();
    } else if (r.has_delete_range()) {
      pb::RequestOp op;
      *op.mutable_delete_range() = r.delete_range();
      *out.mutable_delete_range() = ModelOp(after, op, revision).delete_range();
    } else {
      bool ok = true;
      for (const pb::Compare& c : r.txn().compare()) ok = ok && ModelCompare(after, c);
      out.mutable_txn()->set_succeeded(ok);
      for (const pb::RequestOp& op : ok ? r.txn().success() : r.txn().failure()) {
        *out.mutable_txn()->add_responses() = ModelOp(after, op, revision);
      }
    }
    // The revision moves iff the request put a key or deleted one.
    bool changed = r.has_put() || out.delete_range().deleted() > 0;
    for (const pb::ResponseOp& op : out.txn().responses()) {
      changed = changed || op.has_put() || op.delete_range().deleted() > 0;
    }
    if (changed) m.revision = revision;
    m.kvs = std::move(after);
  }
  out.mutable_header()->set_revision(m.revision);
  if (r.client_id() != 0) m.sessions[r.client_id()] = Session{r.sequence(), out, m.log_time_ms};
  return out;
}

// ---- Random requests. ----

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) {}
  int Int(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool Chance(int percent) { return Int(1, 100) <= percent; }

  std::string Key() {
    if (Chance(2)) return std::string(7, 'k');  // over max_key_bytes
    std::string key(1, static_cast<char>('a' + Int(0, 5)));
    if (Chance(50)) key += static_cast<char>('a' + Int(0, 5));
    return key;
  }
  // Empty (one key), "\0" (to the end) or a key above `key`.
  std::string RangeEnd(const std::string& key, bool allow_empty) {
    const int kind = Int(0, 9);
    if (allow_empty && kind < 3) return "";
    if (kind < 5) return std::string(1, '\0');
    std::string end = Key();
    return end > key ? end : key + "z";
  }
  std::string Value() {
    return Chance(2) ? std::string(9, 'v')
                     : std::string(Int(0, 3), static_cast<char>('p' + Int(0, 2)));
  }

  pb::RangeRequest Range(int64_t revision) {
    pb::RangeRequest r;
    r.set_key(Key());
    if (r.key().size() > 6) r.set_key("a");
    r.set_range_end(RangeEnd(r.key(), true));
    if (Chance(60)) r.set_limit(Int(1, 4));
    r.set_reverse(Chance(30));
    r.set_keys_only(Chance(20));
    r.set_count_only(Chance(15));
    if (Chance(10)) r.set_min_revision(revision + Int(0, 1));
    return r;
  }
  pb::RequestOp Op(int64_t revision) {
    pb::RequestOp op;
    const int kind = Int(0, 2);
    if (kind == 0) {
      *op.mutable_range() = Range(revision);
      op.mutable_range()->clear_min_revision();
    } else if (kind == 1) {
      op.mutable_put()->set_key(Key());
      op.mutable_put()->set_value(Value());
      op.mutable_put()->set_prev_kv(Chance(50));
    } else {
      op.mutable_delete_range()->set_key(Key());
      op.mutable_delete_range()->set_range_end(RangeEnd(op.delete_range().key(), true));
      op.mutable_delete_range()->set_prev_kv(Chance(50));
    }
    return op;
  }
  pb::Compare Compare(int64_t revision) {
    pb::Compare c;
    c.set_key(Key());
    if (c.key().size() > 6 && Chance(50)) c.set_key("b");
    if (Chance(20)) c.set_range_end(RangeEnd(c.key(), false));
    c.set_target(static_cast<pb::Compare::Target>(Int(1, 5)));
    c.set_result(static_cast<pb::Compare::Result>(Int(1, 4)));
    switch (c.target()) {
      case pb::Compare::TARGET_VALUE:
        c.set_value(Value());
        break;
      case pb::Compare::TARGET_VERSION:
        c.set_version(Int(0, 3));
        break;
      case pb::Compare::TARGET_CREATE_REVISION:
        c.set_create_revision(revision - Int(0, 3));
        break;
      case pb::Compare::TARGET_MOD_REVISION:
        c.set_mod_revision(revision - Int(0, 3));
        break;
      default:
        c.set_exists(Chance(50));
        c.set_result(Chance(50) ? pb::Compare::RESULT_EQUAL : pb::Compare::RESULT_NOT_EQUAL);
    }
    return c;
  }
  pb::ClientRequest Write(int64_t revision) {
    pb::ClientRequest r;
    const int kind = Int(0, 9);
    if (kind < 4) {
      r.mutable_put()->set_key(Key());
      r.mutable_put()->set_value(Value());
      r.mutable_put()->set_prev_kv(Chance(50));
    } else if (kind < 6) {
      r.mutable_delete_range()->set_key(Key());
      r.mutable_delete_range()->set_range_end(RangeEnd(r.delete_range().key(), true));
      r.mutable_delete_range()->set_prev_kv(Chance(50));
    } else {
      pb::TxnRequest* txn = r.mutable_txn();
      for (int i = Int(0, 2); i > 0; --i) *txn->add_compare() = Compare(revision);
      for (int i = Int(0, Chance(5) ? 4 : 3); i > 0; --i) *txn->add_success() = Op(revision);
      for (int i = Int(0, 2); i > 0; --i) *txn->add_failure() = Op(revision);
    }
    return r;
  }

 private:
  std::mt19937_64 rng_;
};

void ExpectSameResponse(const pb::ClientResponse& real, const pb::ClientResponse& want,
                        const std::string& context) {
  if (want.has_error()) {
    ASSERT_TRUE(real.has_error()) << context << "\nreal: " << real.ShortDebugString();
    EXPECT_EQ(real.error().code(), want.error().code()) << context << real.error().message();
    EXPECT_EQ(real.header().revision(), want.header().revision()) << context;
    return;
  }
  pb::ClientResponse a = real;
  a.clear_request_id();
  std::string diff;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  EXPECT_TRUE(differencer.Compare(a, want))
      << context << "\n"
      << diff << "\nreal: " << a.ShortDebugString() << "\nwant: " << want.ShortDebugString();
}

// The state one run carries from sequence to sequence: store, model and clients.
struct World {
  World(const std::string& dir) : harness(dir, SmallOptions()) {}
  KvHarness harness;
  Model model;
  int64_t clock_ms = 1'000'000;
  std::vector<uint64_t> next_sequence = std::vector<uint64_t>(kClients + 1, 1);
  std::vector<std::optional<pb::ClientRequest>> last_write =
      std::vector<std::optional<pb::ClientRequest>>(kClients + 1);
  uint64_t next_request_id = 1;
};

// Applies `request` to both and compares the responses.
void CheckWrite(World& world, pb::ClientRequest request, const std::string& context) {
  request.set_request_id(world.next_request_id++);
  request.set_proposed_at_unix_ms(world.clock_ms);
  const pb::ClientResponse want = ModelWrite(world.model, request, SmallOptions());
  const pb::ClientResponse real = world.harness.Write(request);
  EXPECT_EQ(real.request_id(), request.request_id()) << context;
  ExpectSameResponse(real, want, context + " write " + request.ShortDebugString());
}

void CheckRead(World& world, const pb::RangeRequest& range, const std::string& context) {
  absl::StatusOr<KvRead> read = world.harness.Read(range);
  if (range.min_revision() > world.model.revision) {
    EXPECT_FALSE(read.ok()) << context;
    return;
  }
  ASSERT_TRUE(read.ok()) << context << " " << read.status();
  EXPECT_EQ(read->revision, world.model.revision) << context;
  pb::ClientResponse real, want;
  *real.mutable_range() = read->range;
  *want.mutable_range() = ModelRange(world.model.kvs, range);
  ExpectSameResponse(real, want, context + " range " + range.ShortDebugString());
}

// The watch history, replayed from revision 1, must rebuild the model's keys exactly:
// every change recorded once, at its revision, with its counters.
void CheckHistory(World& world, const std::string& context) {
  absl::StatusOr<std::unique_ptr<storage::StateSnapshot>> snapshot =
      world.harness.state().NewSnapshot();
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  std::map<std::string, pb::KeyValue> replayed;
  int64_t through = 0;
  // Bounded: every page advances `through` by at least one revision.
  while (through < world.model.revision) {
    absl::StatusOr<HistoryPage> page =
        ReadHistory(**snapshot, std::string(1, '\0'), std::string(1, '\0'), through + 1,
                    world.model.revision, 64 << 10);
    ASSERT_TRUE(page.ok()) << context << ": " << page.status();
    ASSERT_GT(page->through, through);
    for (const pb::Event& event : page->events) {
      ASSERT_GT(event.kv().mod_revision(), through) << context;
      ASSERT_LE(event.kv().mod_revision(), page->through) << context;
      if (event.type() == pb::Event::TYPE_DELETE) {
        EXPECT_EQ(replayed.erase(event.kv().key()), 1u) << context << ": delete of a missing key";
      } else {
        replayed[event.kv().key()] = event.kv();
      }
    }
    through = page->through;
  }
  ASSERT_EQ(replayed.size(), world.model.kvs.size()) << context;
  for (const auto& [key, kv] : world.model.kvs) {
    auto it = replayed.find(key);
    ASSERT_NE(it, replayed.end()) << context << ": " << key;
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(it->second, kv))
        << context << ": " << it->second.ShortDebugString() << " vs " << kv.ShortDebugString();
  }
}

pb::RangeRequest Everything() {
  pb::RangeRequest all;
  all.set_key(std::string(1, '\0'));
  all.set_range_end(std::string(1, '\0'));
  return all;
}

// One seeded sequence of `steps` random operations on `world`; restarts with
// probability restart_per_mille per step.
void RunSequence(World& world, uint64_t seed, int steps, int restart_per_mille) {
  SCOPED_TRACE(absl::StrCat("--seed=", seed));
  Generator gen(seed);
  for (int step = 0; step < steps && !::testing::Test::HasFailure(); ++step) {
    const std::string context = absl::StrCat("seed ", seed, " step ", step);
    if (gen.Int(1, 1000) <= restart_per_mille) {
      // A clean restart, a crash, or a checkpoint taken now or installed (as a Raft
      // snapshot is: then the log after it is applied again).
      switch (gen.Int(0, 3)) {
        case 0:
        case 1:
          world.harness.Restart(/*crash=*/gen.Chance(50));
          break;
        case 2:
          world.harness.Checkpoint();
          break;
        default:
          world.harness.InstallLastCheckpoint();
          break;
      }
      continue;
    }
    if (gen.Chance(22)) {
      CheckRead(world, gen.Range(world.model.revision), context);
      continue;
    }
    // A write: new, retried, or stale; by client 0 (no session) or a client with one.
    world.clock_ms += gen.Chance(5) ? -3000 : gen.Int(0, 400);
    const int client = gen.Int(0, kClients);
    pb::ClientRequest request;
    std::optional<pb::ClientRequest>& last = world.last_write[static_cast<size_t>(client)];
    if (client != 0 && last && gen.Chance(20)) {
      request = *last;  // a retry of the same (client, sequence)
      if (gen.Chance(20) && request.sequence() > 1) request.set_sequence(request.sequence() - 1);
    } else {
      request = gen.Write(world.model.revision);
      if (client != 0) {
        request.set_client_id(static_cast<uint64_t>(client));
        request.set_sequence(world.next_sequence[static_cast<size_t>(client)]++);
        last = request;
      }
    }
    CheckWrite(world, request, context);
  }
}

TEST(KvModel, ThousandsOfShortSequencesMatchTheModel) {
  // Opening RocksDB dominates the cost, so groups of sequences share a store: each
  // sequence starts by deleting every key, and carries on the revision, the sessions
  // and the log time the earlier ones left.
  constexpr uint64_t kSequences = 1000;
  constexpr uint64_t kPerStore = 100;
  for (uint64_t first = 1; first <= kSequences && !HasFailure(); first += kPerStore) {
    World world(absl::StrCat(::testing::TempDir(), "/kv-model-", ::getpid(), "-", first));
    for (uint64_t seed = first; seed < first + kPerStore && !HasFailure(); ++seed) {
      pb::ClientRequest clear;
      *clear.mutable_delete_range() = pb::DeleteRangeRequest();
      clear.mutable_delete_range()->set_key(Everything().key());
      clear.mutable_delete_range()->set_range_end(Everything().range_end());
      CheckWrite(world, clear,
                 absl::StrCat("clear before seed ", seed, " (store of seed ", first, ")"));
      RunSequence(world, seed, /*steps=*/30, /*restart_per_mille=*/5);
    }
    world.harness.Restart(/*crash=*/true);
    CheckRead(world, Everything(), absl::StrCat("final scan of the store of seed ", first));
    CheckHistory(world, absl::StrCat("history of the store of seed ", first));
  }
}

TEST(KvModel, LongSequencesWithRestartsMatchTheModel) {
  for (uint64_t seed = 100001; seed <= 100005 && !HasFailure(); ++seed) {
    World world(absl::StrCat(::testing::TempDir(), "/kv-model-", ::getpid(), "-", seed));
    RunSequence(world, seed, /*steps=*/1200, /*restart_per_mille=*/30);
    world.harness.Restart(/*crash=*/true);
    CheckRead(world, Everything(), absl::StrCat("final scan of seed ", seed));
    CheckHistory(world, absl::StrCat("history of seed ", seed));
  }
}

}  // namespace
}  // namespace stead::server
