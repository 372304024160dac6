// stead::Client: calls, retries and routing over client_internal::Connection.
//
// A call is a Call object: the request, its deadline and, for a write, the session
// (client id and sequence) every attempt carries. An attempt goes to one connection
// and is bounded by ClientOptions::attempt_timeout; when it fails in a way that may
// succeed elsewhere or later (Unavailable, DeadlineExceeded, ResourceExhausted, no
// answer) the call tries again — at once on the member a leader hint names, otherwise
// on the next endpoint after a backoff — until its own deadline.
#include "stead/client.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "base/asio.h"
#include "base/mutex.h"
#include "base/status_macros.h"
#include "client/connection.h"
#include "wire/tls_context.h"
#include "client/watcher.h"
#include "proto/kv.pb.h"
#include "server/frame.h"
#include "server/kv_limits.h"

namespace stead {
namespace {

namespace asio = boost::asio;
using client_internal::Connection;

// Where an attempt may go.
enum class Route {
  kLeader,  // writes and linearizable reads: the leader when known
  kAny,     // serializable reads and admin listings: any member
  kEndpoint,  // one named member only (what it says of itself): no hints followed
};

// One write slot of the exactly-once protocol: the cluster applies sequence n of a
// client id only after n-1, so each write in flight has its own id.
struct Session {
  uint64_t client_id = 0;
  uint64_t sequence = 0;  // of the last write that used this session
};

absl::Status StatusFromError(const pb::Error& error) {
  absl::StatusCode code = absl::StatusCode::kUnknown;
  if (error.code() > 0 && error.code() <= static_cast<int>(absl::StatusCode::kUnauthenticated)) {
    code = static_cast<absl::StatusCode>(error.code());
  }
  return absl::Status(code, error.message());
}

bool Retriable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kResourceExhausted;
}

KeyValue FromProto(const pb::KeyValue& kv) {
  return KeyValue{.key = kv.key(),
                  .value = kv.value(),
                  .create_revision = kv.create_revision(),
                  .mod_revision = kv.mod_revision(),
                  .version = kv.version()};
}

Member MemberFromProto(const pb::Member& m) {
  return Member{.id = m.id(),
                .name = m.name(),
                .peer_address = m.peer_address(),
                .client_address = m.client_address(),
                .is_learner = m.is_learner(),
                .is_leader = m.is_leader(),
                .match_index = m.match_index()};
}

std::vector<Member> MembersFromProto(
    const google::protobuf::RepeatedPtrField<pb::Member>& members) {
  std::vector<Member> out;
  out.reserve(static_cast<size_t>(members.size()));
  for (const pb::Member& m : members) out.push_back(MemberFromProto(m));
  return out;
}

bool IsHostPort(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon != std::string::npos && colon > 0 && colon + 1 < address.size();
}

}  // namespace

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) != 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

namespace {

Compare CompareOn(std::string_view key, Compare::Target target, Compare::Result result) {
  Compare compare;
  compare.key = std::string(key);
  compare.target = target;
  compare.result = result;
  return compare;
}

TxnOp TxnOpOn(std::string_view key, TxnOp::Kind kind) {
  TxnOp op;
  op.key = std::string(key);
  op.kind = kind;
  return op;
}

}  // namespace

Compare Compare::Value(std::string_view key, Result result, std::string_view value) {
  Compare compare = CompareOn(key, Target::kValue, result);
  compare.value = std::string(value);
  return compare;
}

Compare Compare::Version(std::string_view key, Result result, int64_t version) {
  Compare compare = CompareOn(key, Target::kVersion, result);
  compare.number = version;
  return compare;
}

Compare Compare::CreateRevision(std::string_view key, Result result, int64_t revision) {
  Compare compare = CompareOn(key, Target::kCreateRevision, result);
  compare.number = revision;
  return compare;
}

Compare Compare::ModRevision(std::string_view key, Result result, int64_t revision) {
  Compare compare = CompareOn(key, Target::kModRevision, result);
  compare.number = revision;
  return compare;
}

Compare Compare::Exists(std::string_view key) {
  Compare compare = CompareOn(key, Target::kExists, Result::kEqual);
  compare.exists = true;
  return compare;
}

Compare Compare::Missing(std::string_view key) {
  Compare compare = CompareOn(key, Target::kExists, Result::kEqual);
  compare.exists = false;
  return compare;
}

TxnOp TxnOp::Get(std::string_view key, std::string_view range_end, int64_t limit) {
  TxnOp op = TxnOpOn(key, Kind::kGet);
  op.range_end = std::string(range_end);
  op.limit = limit;
  return op;
}

TxnOp TxnOp::Put(std::string_view key, std::string_view value) {
  TxnOp op = TxnOpOn(key, Kind::kPut);
  op.value = std::string(value);
  return op;
}

TxnOp TxnOp::Delete(std::string_view key, std::string_view range_end) {
  TxnOp op = TxnOpOn(key, Kind::kDelete);
  op.range_end = std::string(range_end);
  return op;
}

class Client::Impl {
 public:
  using Done = std::function<void(absl::StatusOr<pb::ClientResponse>)>;

  Impl(ClientOptions options, std::shared_ptr<wire::TlsContextProvider> tls)
      : options_(std::move(options)), tls_(std::move(tls)), work_(asio::make_work_guard(io_)), rng_(std::random_device{}()) {
    {
      MutexLock lock(&mu_);
      for (const std::string& address : options_.endpoints) AddEndpointLocked(address);
    }
    for (int i = 0; i < options_.io_threads; ++i) threads_.emplace_back([this] { io_.run(); });
  }

  ~Impl() {
    shutting_down_ = true;
    {
      MutexLock lock(&mu_);
      for (auto& endpoint : endpoints_) {
        for (auto& connection : endpoint->connections) connection->Close();
      }
    }
    {
      // Calls fail their pending attempts (Close) and then finish with Cancelled; one
      // in a backoff pause finishes when the pause ends (at most max_backoff).
      std::unique_lock<std::mutex> lock(idle_mu_);
      idle_cv_.wait_for(lock, std::chrono::seconds(1) + absl::ToChronoMilliseconds(options_.max_backoff),
                        [this] { return inflight_.load() == 0; });
    }
    work_.reset();
    io_.stop();
    for (std::thread& thread : threads_) thread.join();
  }

  // Starts one call; `done` runs exactly once on an I/O thread. `endpoint` is the
  // member of a Route::kEndpoint call (unused otherwise).
  void Start(pb::ClientRequest request, Route route, absl::Duration timeout, Done done,
             std::string endpoint = "");

  // Client::AuthToken.
  absl::StatusOr<std::string> WaitForAuthToken(absl::Duration timeout) {
    StartAuthenticateIfNeeded();
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      {
        MutexLock lock(&mu_);
        if (!authenticating_) {
          if (!last_auth_error_.ok()) return last_auth_error_;
          return token_;
        }
      }
      if (absl::Now() >= deadline) return absl::DeadlineExceededError("no token in time");
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  // One auth call, waited for (its error as the status).
  absl::StatusOr<pb::ClientResponse> CallAuth(pb::AuthRequest auth, CallOptions options);

  std::string leader_address() const {
    MutexLock lock(&mu_);
    return leader_address_;
  }

  // Watches may be served by any member: each opening goes to the next one.
  client_internal::WatchContext MakeWatchContext() {
    client_internal::WatchContext context;
    context.io = &io_;
    context.next_connection = [this] {
      MutexLock lock(&mu_);
      Endpoint& endpoint = *endpoints_[round_robin_.fetch_add(1) % endpoints_.size()];
      const uint64_t slot = endpoint.next_connection.fetch_add(1);
      return endpoint.connections[slot % endpoint.connections.size()];
    };
    context.next_request_id = [this] { return next_request_id_.fetch_add(1); };
    context.shutting_down = [this] { return shutting_down_.load(); };
    context.max_frame_bytes = options_.max_frame_bytes;
    context.initial_backoff = options_.initial_backoff;
    context.max_backoff = options_.max_backoff;
    context.auth_token = [this] {
      StartAuthenticateIfNeeded();
      MutexLock lock(&mu_);
      return token_;
    };
    context.refresh_auth_token = [this] {
      {
        MutexLock lock(&mu_);
        token_.clear();
        auth_off_ = false;
      }
      StartAuthenticateIfNeeded();
    };
    return context;
  }

  // After a leadership transfer: later calls go straight to the new leader, rather
  // than through the old one, which forwards them and so never sends a leader hint.
  void LeaderMovedTo(const std::string& address) {
    if (IsHostPort(address)) SetLeader(address);
  }

 private:
  struct Endpoint {
    std::string address;
    std::vector<std::shared_ptr<Connection>> connections;
    std::atomic<uint64_t> next_connection{0};
  };

  struct Call {
    Call(asio::io_context& io) : strand(asio::make_strand(io)), timer(strand) {}
    pb::ClientRequest request;
    Route route = Route::kAny;
    std::string endpoint;  // Route::kEndpoint: every attempt goes to this member
    bool is_write = false;
    absl::Time deadline;
    Done done;
    Session session;
    asio::strand<asio::io_context::executor_type> strand;
    asio::steady_timer timer;  // the attempt's timeout, or the backoff pause
    // Touched on `strand` only.
    int attempt = 0;  // +1 per attempt; completions of older attempts are ignored
    bool finished = false;
    std::shared_ptr<Connection> connection;  // of the current attempt
    std::string hinted_address;              // leader hint for the next attempt
    absl::Status last_error;
    bool reauthenticated = false;  // got a new token after an UNAUTHENTICATED answer
  };

  Endpoint* AddEndpointLocked(const std::string& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto& endpoint : endpoints_) {
      if (endpoint->address == address) return endpoint.get();
    }
    auto endpoint = std::make_unique<Endpoint>();
    endpoint->address = address;
    for (int i = 0; i < options_.connections_per_endpoint; ++i) {
      endpoint->connections.push_back(
          std::make_shared<Connection>(io_, address, options_.connect_timeout,
                                       options_.max_frame_bytes, tls_, options_.tls.server_name));
    }
    endpoints_.push_back(std::move(endpoint));
    return endpoints_.back().get();
  }

  std::shared_ptr<Connection> PickConnection(Call& call);
  void MaybeRefreshLeader();
  void Attempt(const std::shared_ptr<Call>& call);
  void OnAnswer(const std::shared_ptr<Call>& call, absl::StatusOr<pb::ClientResponse> answer);
  void RetryAfter(const std::shared_ptr<Call>& call, absl::Status error, absl::Duration pause);
  void Finish(const std::shared_ptr<Call>& call, absl::StatusOr<pb::ClientResponse> result);
  // After `address` failed an attempt: the leader is no longer assumed to be there, and
  // calls without a hint move on to the next endpoint.
  void MarkFailed(const std::string& address);
  void SetLeader(const std::string& address);
  Session AcquireSession();
  void ReleaseSession(Session session);
  // Whether calls must wait for a (new) token before their next attempt.
  bool NeedsToken() const;
  // Queues `call` until the token arrives, starting an authenticate if none runs.
  void WaitForToken(const std::shared_ptr<Call>& call);
  // Starts an authenticate when a token is needed and none runs.
  void StartAuthenticateIfNeeded();
  void OnAuthenticated(absl::StatusOr<pb::ClientResponse> result);

  const ClientOptions options_;
  const std::shared_ptr<wire::TlsContextProvider> tls_;  // null: plain TCP
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::vector<std::thread> threads_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<uint64_t> next_request_id_{1};
  std::atomic<size_t> inflight_{0};
  std::atomic<uint64_t> round_robin_{0};
  std::mutex idle_mu_;
  std::condition_variable idle_cv_;

  mutable Mutex mu_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_ ABSL_GUARDED_BY(mu_);
  size_t current_ ABSL_GUARDED_BY(mu_) = 0;  // endpoint for kLeader calls without a leader
  std::string leader_address_ ABSL_GUARDED_BY(mu_);
  bool refreshing_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time last_refresh_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::vector<Session> free_sessions_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  // Auth (ClientOptions::user): the current token, when to get a new one, whether the
  // cluster said auth is off, and the calls waiting for an authenticate in flight.
  std::string token_ ABSL_GUARDED_BY(mu_);
  absl::Time token_refresh_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool auth_off_ ABSL_GUARDED_BY(mu_) = false;
  bool authenticating_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::shared_ptr<Call>> token_waiters_ ABSL_GUARDED_BY(mu_);
  absl::Status last_auth_error_ ABSL_GUARDED_BY(mu_);  // of the last authenticate
};

bool Client::Impl::NeedsToken() const {
  if (options_.user.empty()) return false;
  MutexLock lock(&mu_);
  return !auth_off_ && (token_.empty() || absl::Now() >= token_refresh_at_);
}

void Client::Impl::WaitForToken(const std::shared_ptr<Call>& call) {
  {
    MutexLock lock(&mu_);
    token_waiters_.push_back(call);
  }
  StartAuthenticateIfNeeded();
}

void Client::Impl::StartAuthenticateIfNeeded() {
  if (!NeedsToken()) return;
  {
    MutexLock lock(&mu_);
    if (authenticating_) return;
    authenticating_ = true;
  }
  pb::ClientRequest request;
  request.mutable_authenticate()->set_name(options_.user);
  request.mutable_authenticate()->set_password(options_.password);
  Start(std::move(request), Route::kAny, options_.default_timeout,
        [this](absl::StatusOr<pb::ClientResponse> result) { OnAuthenticated(std::move(result)); });
}

void Client::Impl::OnAuthenticated(absl::StatusOr<pb::ClientResponse> result) {
  std::vector<std::shared_ptr<Call>> waiters;
  absl::Status failed;
  {
    MutexLock lock(&mu_);
    authenticating_ = false;
    waiters.swap(token_waiters_);
    if (result.ok() && result->has_authenticate()) {
      token_ = result->authenticate().token();
      // A new token a while before it expires (a third of its life, at most a minute).
      const absl::Time expires = absl::FromUnixMillis(result->authenticate().expires_unix_ms());
      const absl::Duration life = expires - absl::Now();
      token_refresh_at_ = expires - std::min(absl::Minutes(1), life / 3);
    } else if (absl::IsFailedPrecondition(result.status())) {
      auth_off_ = true;  // no token needed until a member answers UNAUTHENTICATED
      token_.clear();
    } else {
      failed = result.ok() ? absl::InternalError("answer to authenticate is not a token")
                           : result.status();
    }
    last_auth_error_ = failed;
  }
  for (const std::shared_ptr<Call>& call : waiters) {
    asio::post(call->strand, [this, call, failed] {
      if (call->finished) return;
      if (!failed.ok()) return Finish(call, failed);
      Attempt(call);
    });
  }
}

void Client::Impl::Start(pb::ClientRequest request, Route route, absl::Duration timeout, Done done,
                         std::string endpoint) {
  if (shutting_down_) {
    done(absl::CancelledError("stead client is shutting down"));
    return;
  }
  // A request over stead's limits could never succeed, on any member or attempt.
  if (absl::Status sized = server::CheckRequestLimits(request, server::KvLimits()); !sized.ok()) {
    done(std::move(sized));
    return;
  }
  if (inflight_.fetch_add(1) >= options_.max_inflight_calls) {
    inflight_.fetch_sub(1);
    done(absl::ResourceExhaustedError(
        absl::StrCat("more than ", options_.max_inflight_calls, " calls in flight")));
    return;
  }
  auto call = std::make_shared<Call>(io_);
  call->route = route;
  call->endpoint = std::move(endpoint);
  call->is_write = request.has_put() || request.has_delete_range() || request.has_txn() ||
                   (request.has_auth() && !request.auth().has_user_list() &&
                    !request.auth().has_role_list() && !request.auth().has_status());
  call->deadline = absl::Now() + (timeout > absl::ZeroDuration() ? timeout : options_.default_timeout);
  call->done = std::move(done);
  if (call->is_write) {
    // The pair is fixed here, once per call: every attempt of this write repeats it.
    call->session = AcquireSession();
    call->session.sequence += 1;
    request.set_client_id(call->session.client_id);
    request.set_sequence(call->session.sequence);
  }
  call->request = std::move(request);
  asio::post(call->strand, [this, call] { Attempt(call); });
}

Session Client::Impl::AcquireSession() {
  MutexLock lock(&mu_);
  if (!free_sessions_.empty()) {
    Session session = free_sessions_.back();
    free_sessions_.pop_back();
    return session;
  }
  uint64_t id = 0;
  while (id == 0) id = rng_();  // 0 means "no session" on the wire
  return Session{.client_id = id, .sequence = 0};
}

void Client::Impl::ReleaseSession(Session session) {
  MutexLock lock(&mu_);
  free_sessions_.push_back(session);
}

std::shared_ptr<Connection> Client::Impl::PickConnection(Call& call) {
  MutexLock lock(&mu_);
  Endpoint* endpoint = nullptr;
  if (call.route == Route::kEndpoint) {
    endpoint = AddEndpointLocked(call.endpoint);
  } else if (!call.hinted_address.empty()) {
    endpoint = AddEndpointLocked(call.hinted_address);
  } else if (call.route == Route::kLeader && options_.route_to_leader) {
    endpoint = leader_address_.empty() ? endpoints_[current_ % endpoints_.size()].get()
                                       : AddEndpointLocked(leader_address_);
  } else {
    endpoint = endpoints_[round_robin_.fetch_add(1) % endpoints_.size()].get();
  }
  const uint64_t slot = endpoint->next_connection.fetch_add(1);
  return endpoint->connections[slot % endpoint->connections.size()];
}

void Client::Impl::MarkFailed(const std::string& address) {
  MutexLock lock(&mu_);
  if (leader_address_ == address) leader_address_.clear();
  if (endpoints_[current_ % endpoints_.size()]->address == address) {
    current_ = (current_ + 1) % endpoints_.size();
  }
}

void Client::Impl::SetLeader(const std::string& address) {
  MutexLock lock(&mu_);
  leader_address_ = address;
}

// Learns the leader's address from a member list, at most one refresh at a time and
// one per 200 ms, so that writes stop paying the forwarding hop.
void Client::Impl::MaybeRefreshLeader() {
  if (!options_.route_to_leader || shutting_down_) return;
  {
    MutexLock lock(&mu_);
    if (!leader_address_.empty() || refreshing_) return;
    if (absl::Now() - last_refresh_ < absl::Milliseconds(200)) return;
    refreshing_ = true;
    last_refresh_ = absl::Now();
  }
  pb::ClientRequest request;
  request.mutable_member_list();
  Start(std::move(request), Route::kAny, absl::Seconds(2),
        [this](absl::StatusOr<pb::ClientResponse> response) {
          MutexLock lock(&mu_);
          refreshing_ = false;
          if (!response.ok()) return;
          for (const pb::Member& member : response->member_list().members()) {
            if (member.is_leader() && IsHostPort(member.client_address())) {
              leader_address_ = member.client_address();
            }
          }
        });
}

void Client::Impl::Attempt(const std::shared_ptr<Call>& call) {
  const absl::Duration remaining = call->deadline - absl::Now();
  if (shutting_down_) {
    Finish(call, absl::CancelledError("stead client destroyed with the call in flight"));
    return;
  }
  if (remaining <= absl::ZeroDuration()) {
    // Unavailable when members answered that they cannot serve (or could not be
    // reached) right to the end; DeadlineExceeded when an answer did not come in time.
    absl::Status last = call->last_error;
    if (last.ok() || !absl::IsUnavailable(last)) {
      last = absl::DeadlineExceededError(absl::StrCat(
          "deadline passed after ", call->attempt, " attempts",
          call->is_write ? " (the write's outcome is unknown)" : "",
          last.ok() ? "" : absl::StrCat("; last error: ", last.message())));
    } else {
      last = absl::UnavailableError(absl::StrCat("after ", call->attempt, " attempts: ",
                                                 last.message()));
    }
    Finish(call, std::move(last));
    return;
  }
  if (!call->request.has_authenticate()) {
    if (NeedsToken()) return WaitForToken(call);
    MutexLock lock(&mu_);
    call->request.set_auth_token(token_);
  }
  if (call->route == Route::kLeader) MaybeRefreshLeader();
  call->connection = PickConnection(*call);
  call->hinted_address.clear();
  const int attempt = ++call->attempt;
  const uint64_t request_id = next_request_id_.fetch_add(1);
  const absl::Duration attempt_timeout = std::min(remaining, options_.attempt_timeout);
  call->request.set_request_id(request_id);
  call->request.set_timeout_ms(
      static_cast<uint32_t>(std::max<int64_t>(1, absl::ToInt64Milliseconds(attempt_timeout))));
  std::string frame;
  if (absl::Status status = server::AppendFrame(call->request, options_.max_frame_bytes, &frame);
      !status.ok()) {
    Finish(call, status);
    return;
  }
  call->timer.expires_after(absl::ToChronoNanoseconds(attempt_timeout));
  call->timer.async_wait([this, call, attempt, request_id](boost::system::error_code ec) {
    if (ec || call->finished || call->attempt != attempt) return;
    call->connection->Forget(request_id);
    const std::string address = call->connection->address();
    MarkFailed(address);
    RetryAfter(call, absl::DeadlineExceededError(absl::StrCat("no answer from ", address)),
               absl::ZeroDuration());
  });
  call->connection->Send(
      request_id, std::move(frame),
      [this, call, attempt](absl::StatusOr<pb::ClientResponse> answer) {
        asio::post(call->strand, [this, call, attempt, answer = std::move(answer)]() mutable {
          if (call->finished || call->attempt != attempt) return;
          call->timer.cancel();
          OnAnswer(call, std::move(answer));
        });
      });
}

void Client::Impl::OnAnswer(const std::shared_ptr<Call>& call,
                            absl::StatusOr<pb::ClientResponse> answer) {
  const std::string& address = call->connection->address();
  if (!answer.ok()) {  // the connection failed
    MarkFailed(address);
    RetryAfter(call, answer.status(), options_.initial_backoff);
    return;
  }
  if (!answer->has_error()) {
    Finish(call, std::move(answer));
    return;
  }
  const pb::Error& error = answer->error();
  absl::Status status = StatusFromError(error);
  if (absl::IsUnauthenticated(status) && !options_.user.empty() && !call->reauthenticated &&
      !call->request.has_authenticate()) {
    // An expired token, or auth enabled since: one new token, then the same call.
    call->reauthenticated = true;
    {
      MutexLock lock(&mu_);
      if (token_ == call->request.auth_token()) token_.clear();
      auth_off_ = false;
    }
    RetryAfter(call, std::move(status), absl::ZeroDuration());
    return;
  }
  if (!Retriable(status.code())) {
    Finish(call, std::move(status));
    return;
  }
  if (absl::IsUnavailable(status) && call->route != Route::kEndpoint &&
      IsHostPort(error.leader_address()) && error.leader_address() != address) {
    // Raft leader hint: go straight there.
    SetLeader(error.leader_address());
    call->hinted_address = error.leader_address();
    RetryAfter(call, std::move(status), absl::ZeroDuration());
    return;
  }
  if (absl::IsUnavailable(status)) MarkFailed(address);
  RetryAfter(call, std::move(status), options_.initial_backoff);
}

void Client::Impl::RetryAfter(const std::shared_ptr<Call>& call, absl::Status error,
                              absl::Duration pause) {
  call->last_error = std::move(error);
  if (pause > absl::ZeroDuration()) {
    // Exponential in the attempts so far, capped; never past the deadline.
    const int doublings = std::min(call->attempt - 1, 10);
    pause = std::min(pause * (1 << std::max(doublings, 0)), options_.max_backoff);
    pause = std::min(pause, std::max(absl::ZeroDuration(), call->deadline - absl::Now()));
  }
  if (pause <= absl::ZeroDuration()) {
    Attempt(call);
    return;
  }
  const int attempt = call->attempt;
  call->timer.expires_after(absl::ToChronoNanoseconds(pause));
  call->timer.async_wait([this, call, attempt](boost::system::error_code ec) {
    if (ec || call->finished || call->attempt != attempt) return;
    Attempt(call);
  });
}

void Client::Impl::Finish(const std::shared_ptr<Call>& call,
                          absl::StatusOr<pb::ClientResponse> result) {
  call->finished = true;
  call->timer.cancel();
  // The session is free again whatever the outcome: the next write on it uses the next
  // sequence, and the cluster refuses a late attempt of this one as older.
  if (call->is_write) ReleaseSession(call->session);
  Done done = std::move(call->done);
  done(std::move(result));
  if (inflight_.fetch_sub(1) == 1 && shutting_down_) {
    std::lock_guard<std::mutex> lock(idle_mu_);
    idle_cv_.notify_all();
  }
}

// ---- Client ----

absl::StatusOr<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  if (options.endpoints.empty()) return absl::InvalidArgumentError("no endpoints");
  for (const std::string& endpoint : options.endpoints) {
    if (!IsHostPort(endpoint)) {
      return absl::InvalidArgumentError(absl::StrCat("endpoint '", endpoint, "' is not host:port"));
    }
  }
  if (options.connections_per_endpoint < 1 || options.connections_per_endpoint > 64) {
    return absl::InvalidArgumentError("connections_per_endpoint must be in [1, 64]");
  }
  if (options.io_threads < 1 || options.io_threads > 64) {
    return absl::InvalidArgumentError("io_threads must be in [1, 64]");
  }
  if (options.default_timeout <= absl::ZeroDuration() ||
      options.attempt_timeout <= absl::ZeroDuration() ||
      options.connect_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeouts must be positive");
  }
  if (options.max_inflight_calls == 0) {
    return absl::InvalidArgumentError("max_inflight_calls must be positive");
  }
  if (!options.password_file.empty()) {
    if (!options.password.empty()) {
      return absl::InvalidArgumentError("password and password_file exclude each other");
    }
    std::ifstream file(options.password_file);
    if (!file || !std::getline(file, options.password)) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot read the password file ", options.password_file));
    }
    if (!options.password.empty() && options.password.back() == '\r') options.password.pop_back();
  }
  if (options.user.empty() != options.password.empty()) {
    return absl::InvalidArgumentError("a user needs a password (or neither: a certificate)");
  }
  // The TLS files are read now, so a mistake fails here, naming the field.
  std::shared_ptr<wire::TlsContextProvider> tls;
  STEAD_ASSIGN_OR_RETURN(tls, client_internal::MakeClientTlsProvider(options.tls));
  return std::unique_ptr<Client>(new Client(std::make_unique<Impl>(std::move(options), std::move(tls))));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

std::string Client::LeaderAddressForTesting() const { return impl_->leader_address(); }

std::unique_ptr<Watcher> Client::Watch(std::string_view key, WatchOptions options,
                                       WatchCallback on_events,
                                       std::function<void(absl::Status)> on_end) {
  pb::WatchRequest request;
  request.set_key(std::string(key));
  request.set_range_end(options.range_end);
  request.set_start_revision(options.start_revision);
  return client_internal::StartWatch(impl_->MakeWatchContext(), std::move(request),
                                     std::move(on_events), std::move(on_end));
}

namespace {

// The part of a response a call type needs; Internal when the member answered with
// another kind of response.
// The error of a failed answer, moved rather than copied: the caller's thread then owns
// the only reference to its message (Debian's abseil is not built for ThreadSanitizer,
// which cannot see a shared reference count).
absl::Status TakeError(absl::StatusOr<pb::ClientResponse>&& response) {
  return std::move(response).status();
}

absl::StatusOr<std::optional<std::string>> ToValue(absl::StatusOr<pb::ClientResponse> response) {
  if (!response.ok()) return TakeError(std::move(response));
  if (!response->has_range()) return absl::InternalError("answer to a get is not a range");
  if (response->range().kvs_size() == 0) return std::optional<std::string>();
  return std::optional<std::string>(response->range().kvs(0).value());
}

absl::Status ToPutStatus(absl::StatusOr<pb::ClientResponse> response) {
  if (!response.ok()) return TakeError(std::move(response));
  if (!response->has_put()) return absl::InternalError("answer to a put is not a put");
  return absl::OkStatus();
}

absl::StatusOr<bool> ToDeleted(absl::StatusOr<pb::ClientResponse> response) {
  if (!response.ok()) return TakeError(std::move(response));
  if (!response->has_delete_range()) return absl::InternalError("answer to a delete is not a delete");
  return response->delete_range().deleted() > 0;
}

RangeResult RangeResultFromProto(const pb::RangeResponse& range, int64_t revision) {
  RangeResult result;
  for (const pb::KeyValue& kv : range.kvs()) result.kvs.push_back(FromProto(kv));
  result.more = range.more();
  result.next_key = range.next_key();
  if (result.more && result.next_key.empty() && !result.kvs.empty()) {
    // A member that does not fill next_key: continue right after the last key.
    result.next_key = result.kvs.back().key + std::string(1, '\0');
  }
  result.count = range.count();
  result.revision = revision;
  return result;
}

absl::StatusOr<RangeResult> ToRangeResult(absl::StatusOr<pb::ClientResponse> response) {
  if (!response.ok()) return TakeError(std::move(response));
  if (!response->has_range()) return absl::InternalError("answer to a range is not a range");
  return RangeResultFromProto(response->range(), response->header().revision());
}

absl::StatusOr<std::vector<Member>> ToMembers(absl::StatusOr<pb::ClientResponse> response) {
  if (!response.ok()) return TakeError(std::move(response));
  if (response->has_member_list()) return MembersFromProto(response->member_list().members());
  if (response->has_member_remove()) return MembersFromProto(response->member_remove().members());
  return absl::InternalError("answer to a member call is not a member list");
}

pb::ClientRequest GetRequest(std::string_view key, bool serializable) {
  pb::ClientRequest request;
  pb::RangeRequest* range = request.mutable_range();
  range->set_key(std::string(key));
  range->set_consistency(serializable ? pb::READ_CONSISTENCY_SERIALIZABLE
                                      : pb::READ_CONSISTENCY_LINEARIZABLE);
  return request;
}

pb::ClientRequest RangeRequest(std::string_view begin, const RangeOptions& options) {
  pb::ClientRequest request = GetRequest(begin, options.serializable);
  pb::RangeRequest* range = request.mutable_range();
  range->set_range_end(options.range_end);
  range->set_limit(options.limit);
  range->set_keys_only(options.keys_only);
  return request;
}

// The compare as the wire has it; InvalidArgument for an enumerator out of range (a
// value cast into the enum).
absl::StatusOr<pb::Compare> CompareToProto(const Compare& compare) {
  pb::Compare out;
  out.set_key(compare.key);
  out.set_range_end(compare.range_end);
  switch (compare.result) {
    case Compare::Result::kEqual:
      out.set_result(pb::Compare::RESULT_EQUAL);
      break;
    case Compare::Result::kNotEqual:
      out.set_result(pb::Compare::RESULT_NOT_EQUAL);
      break;
    case Compare::Result::kGreater:
      out.set_result(pb::Compare::RESULT_GREATER);
      break;
    case Compare::Result::kLess:
      out.set_result(pb::Compare::RESULT_LESS);
      break;
    default:
      return absl::InvalidArgumentError("unknown Compare::Result");
  }
  switch (compare.target) {
    case Compare::Target::kValue:
      out.set_target(pb::Compare::TARGET_VALUE);
      out.set_value(compare.value);
      break;
    case Compare::Target::kVersion:
      out.set_target(pb::Compare::TARGET_VERSION);
      out.set_version(compare.number);
      break;
    case Compare::Target::kCreateRevision:
      out.set_target(pb::Compare::TARGET_CREATE_REVISION);
      out.set_create_revision(compare.number);
      break;
    case Compare::Target::kModRevision:
      out.set_target(pb::Compare::TARGET_MOD_REVISION);
      out.set_mod_revision(compare.number);
      break;
    case Compare::Target::kExists:
      out.set_target(pb::Compare::TARGET_EXISTS);
      out.set_exists(compare.exists);
      break;
    default:
      return absl::InvalidArgumentError("unknown Compare::Target");
  }
  return out;
}

absl::StatusOr<pb::RequestOp> TxnOpToProto(const TxnOp& op) {
  pb::RequestOp out;
  switch (op.kind) {
    case TxnOp::Kind::kGet: {
      pb::RangeRequest* range = out.mutable_range();
      range->set_key(op.key);
      range->set_range_end(op.range_end);
      range->set_limit(op.limit);
      return out;
    }
    case TxnOp::Kind::kPut:
      out.mutable_put()->set_key(op.key);
      out.mutable_put()->set_value(op.value);
      return out;
    case TxnOp::Kind::kDelete:
      out.mutable_delete_range()->set_key(op.key);
      out.mutable_delete_range()->set_range_end(op.range_end);
      return out;
  }
  return absl::InvalidArgumentError("unknown TxnOp::Kind");
}

absl::Status AddTxnOps(const std::vector<TxnOp>& ops, const char* branch,
                       google::protobuf::RepeatedPtrField<pb::RequestOp>* out) {
  for (size_t i = 0; i < ops.size(); ++i) {
    STEAD_ASSIGN_OR_RETURN(
        *out->Add(), Annotate(TxnOpToProto(ops[i]), absl::StrCat("txn ", branch, "[", i, "]")));
  }
  return absl::OkStatus();
}

absl::StatusOr<pb::ClientRequest> TxnToProto(const TxnRequest& txn) {
  pb::ClientRequest request;
  pb::TxnRequest* out = request.mutable_txn();
  for (size_t i = 0; i < txn.compare.size(); ++i) {
    STEAD_ASSIGN_OR_RETURN(*out->add_compare(), Annotate(CompareToProto(txn.compare[i]),
                                                         absl::StrCat("txn compare[", i, "]")));
  }
  STEAD_RETURN_IF_ERROR(AddTxnOps(txn.success, "success", out->mutable_success()));
  STEAD_RETURN_IF_ERROR(AddTxnOps(txn.failure, "failure", out->mutable_failure()));
  return request;
}

// The kind of answer each TxnOp::Kind expects.
pb::ResponseOp::ResponseCase ResponseCaseOf(TxnOp::Kind kind) {
  switch (kind) {
    case TxnOp::Kind::kGet:
      return pb::ResponseOp::kRange;
    case TxnOp::Kind::kPut:
      return pb::ResponseOp::kPut;
    case TxnOp::Kind::kDelete:
      return pb::ResponseOp::kDeleteRange;
  }
  return pb::ResponseOp::RESPONSE_NOT_SET;
}

// `request` is what was sent: the answer must hold one response per operation of the
// branch that ran, each of its operation's kind (Internal otherwise).
absl::StatusOr<TxnResult> ToTxnResult(const TxnRequest& request,
                                      absl::StatusOr<pb::ClientResponse> response) {
  if (!response.ok()) return TakeError(std::move(response));
  if (!response->has_txn()) return absl::InternalError("answer to a txn is not a txn");
  TxnResult result;
  result.succeeded = response->txn().succeeded();
  result.revision = response->header().revision();
  const std::vector<TxnOp>& ops = result.succeeded ? request.success : request.failure;
  const auto& answers = response->txn().responses();
  if (static_cast<size_t>(answers.size()) != ops.size()) {
    return absl::InternalError(absl::StrCat("answer to a txn has ", answers.size(),
                                            " responses for ", ops.size(), " operations"));
  }
  for (size_t i = 0; i < ops.size(); ++i) {
    const pb::ResponseOp& answer = answers[static_cast<int>(i)];
    if (answer.response_case() != ResponseCaseOf(ops[i].kind)) {
      return absl::InternalError(
          absl::StrCat("answer to txn operation ", i, " is of another kind"));
    }
    TxnOpResult op_result;
    op_result.kind = ops[i].kind;
    if (answer.has_range()) {
      op_result.range = RangeResultFromProto(answer.range(), result.revision);
    }
    if (answer.has_delete_range()) op_result.deleted = answer.delete_range().deleted();
    result.responses.push_back(std::move(op_result));
  }
  return result;
}

Route ReadRoute(bool serializable) { return serializable ? Route::kAny : Route::kLeader; }

// Runs an asynchronous call and waits for its result.
template <typename T, typename Start>
T Wait(Start start) {
  std::promise<T> promise;
  std::future<T> future = promise.get_future();
  start([&promise](T result) { promise.set_value(std::move(result)); });
  return future.get();
}

}  // namespace

void Client::GetAsync(std::string_view key, GetOptions options,
                      Callback<std::optional<std::string>> done) {
  impl_->Start(GetRequest(key, options.serializable), ReadRoute(options.serializable),
               options.timeout,
               [done = std::move(done)](absl::StatusOr<pb::ClientResponse> r) {
                 done(ToValue(std::move(r)));
               });
}

void Client::PutAsync(std::string_view key, std::string_view value, CallOptions options,
                      std::function<void(absl::Status)> done) {
  pb::ClientRequest request;
  request.mutable_put()->set_key(std::string(key));
  request.mutable_put()->set_value(std::string(value));
  impl_->Start(std::move(request), Route::kLeader, options.timeout,
               [done = std::move(done)](absl::StatusOr<pb::ClientResponse> r) {
                 done(ToPutStatus(std::move(r)));
               });
}

void Client::DeleteAsync(std::string_view key, CallOptions options, Callback<bool> done) {
  pb::ClientRequest request;
  request.mutable_delete_range()->set_key(std::string(key));
  impl_->Start(std::move(request), Route::kLeader, options.timeout,
               [done = std::move(done)](absl::StatusOr<pb::ClientResponse> r) {
                 done(ToDeleted(std::move(r)));
               });
}

void Client::RangeAsync(std::string_view begin, RangeOptions options, Callback<RangeResult> done) {
  impl_->Start(RangeRequest(begin, options), ReadRoute(options.serializable), options.timeout,
               [done = std::move(done)](absl::StatusOr<pb::ClientResponse> r) {
                 done(ToRangeResult(std::move(r)));
               });
}

void Client::MemberListAsync(CallOptions options, Callback<std::vector<Member>> done) {
  pb::ClientRequest request;
  request.mutable_member_list();
  impl_->Start(std::move(request), Route::kAny, options.timeout,
               [done = std::move(done)](absl::StatusOr<pb::ClientResponse> r) {
                 done(ToMembers(std::move(r)));
               });
}

void Client::TxnAsync(const TxnRequest& request, CallOptions options, Callback<TxnResult> done) {
  absl::StatusOr<pb::ClientRequest> proto = TxnToProto(request);
  if (!proto.ok()) {
    done(proto.status());
    return;
  }
  // The answer is read against the operations sent, so the call keeps a copy of them.
  impl_->Start(*std::move(proto), Route::kLeader, options.timeout,
               [request, done = std::move(done)](absl::StatusOr<pb::ClientResponse> r) {
                 done(ToTxnResult(request, std::move(r)));
               });
}

absl::StatusOr<std::optional<std::string>> Client::Get(std::string_view key, GetOptions options) {
  return Wait<absl::StatusOr<std::optional<std::string>>>(
      [&](auto done) { GetAsync(key, options, std::move(done)); });
}

absl::Status Client::Put(std::string_view key, std::string_view value, CallOptions options) {
  return Wait<absl::Status>([&](auto done) { PutAsync(key, value, options, std::move(done)); });
}

absl::StatusOr<bool> Client::Delete(std::string_view key, CallOptions options) {
  return Wait<absl::StatusOr<bool>>([&](auto done) { DeleteAsync(key, options, std::move(done)); });
}

absl::StatusOr<RangeResult> Client::Range(std::string_view begin, RangeOptions options) {
  return Wait<absl::StatusOr<RangeResult>>(
      [&](auto done) { RangeAsync(begin, options, std::move(done)); });
}

absl::StatusOr<RangeResult> Client::Scan(std::string_view prefix, int64_t limit,
                                         GetOptions options) {
  return Range(prefix, RangeOptions{.range_end = PrefixEnd(prefix),
                                    .limit = limit,
                                    .serializable = options.serializable,
                                    .timeout = options.timeout});
}

absl::StatusOr<std::vector<Member>> Client::MemberList(CallOptions options) {
  return Wait<absl::StatusOr<std::vector<Member>>>(
      [&](auto done) { MemberListAsync(options, std::move(done)); });
}

absl::StatusOr<std::vector<Member>> Client::MemberRemoveByName(std::string_view name,
                                                               CallOptions options) {
  pb::ClientRequest request;
  request.mutable_member_remove()->set_name(std::string(name));
  return Wait<absl::StatusOr<std::vector<Member>>>([&](auto done) {
    impl_->Start(std::move(request), Route::kLeader, options.timeout,
                 [done = std::move(done)](absl::StatusOr<pb::ClientResponse> r) {
                   done(ToMembers(std::move(r)));
                 });
  });
}

absl::StatusOr<std::vector<Member>> Client::MemberRemoveById(uint64_t id, CallOptions options) {
  pb::ClientRequest request;
  request.mutable_member_remove()->set_id(id);
  return Wait<absl::StatusOr<std::vector<Member>>>([&](auto done) {
    impl_->Start(std::move(request), Route::kLeader, options.timeout,
                 [done = std::move(done)](absl::StatusOr<pb::ClientResponse> r) {
                   done(ToMembers(std::move(r)));
                 });
  });
}

// ---- Leadership and promotion ----

namespace {

absl::StatusOr<LeaderTransferResult> ToLeaderTransferResult(
    absl::StatusOr<pb::ClientResponse> response) {
  if (!response.ok()) return TakeError(std::move(response));
  if (!response->has_leader_transfer()) {
    return absl::InternalError("answer to a leader transfer is not a leader transfer");
  }
  return LeaderTransferResult{
      .previous_leader = MemberFromProto(response->leader_transfer().previous_leader()),
      .leader = MemberFromProto(response->leader_transfer().leader())};
}

absl::StatusOr<MemberPromoteResult> ToMemberPromoteResult(
    absl::StatusOr<pb::ClientResponse> response) {
  if (!response.ok()) return TakeError(std::move(response));
  if (!response->has_member_promote()) {
    return absl::InternalError("answer to a member promotion is not a promotion");
  }
  return MemberPromoteResult{.members = MembersFromProto(response->member_promote().members()),
                             .already_voter = response->member_promote().already_voter()};
}

}  // namespace

absl::StatusOr<LeaderTransferResult> Client::LeaderTransfer(std::string_view to,
                                                            CallOptions options) {
  pb::ClientRequest request;
  request.mutable_leader_transfer()->set_name(std::string(to));
  return Wait<absl::StatusOr<LeaderTransferResult>>([&](auto done) {
    impl_->Start(
        std::move(request), Route::kLeader, options.timeout,
        [impl = impl_.get(), done = std::move(done)](absl::StatusOr<pb::ClientResponse> r) {
          absl::StatusOr<LeaderTransferResult> result = ToLeaderTransferResult(std::move(r));
          if (result.ok()) impl->LeaderMovedTo(result->leader.client_address);
          done(std::move(result));
        });
  });
}

absl::StatusOr<MemberPromoteResult> Client::MemberPromote(std::string_view name,
                                                          CallOptions options) {
  pb::ClientRequest request;
  request.mutable_member_promote()->set_name(std::string(name));
  return Wait<absl::StatusOr<MemberPromoteResult>>([&](auto done) {
    impl_->Start(std::move(request), Route::kLeader, options.timeout,
                 [done = std::move(done)](absl::StatusOr<pb::ClientResponse> r) {
                   done(ToMemberPromoteResult(std::move(r)));
                 });
  });
}

absl::StatusOr<TxnResult> Client::Txn(const TxnRequest& request, CallOptions options) {
  return Wait<absl::StatusOr<TxnResult>>(
      [&](auto done) { TxnAsync(request, options, std::move(done)); });
}

absl::StatusOr<ContentHash> Client::Hash(std::string_view endpoint, CallOptions options) {
  const std::string address(endpoint);
  if (!IsHostPort(address)) {
    return absl::InvalidArgumentError(absl::StrCat("endpoint '", address, "' is not host:port"));
  }
  pb::ClientRequest request;
  request.mutable_hash();
  return Wait<absl::StatusOr<ContentHash>>([&](auto done) {
    impl_->Start(
        std::move(request), Route::kEndpoint, options.timeout,
        [address, done = std::move(done)](absl::StatusOr<pb::ClientResponse> r) {
          if (!r.ok()) return done(TakeError(std::move(r)));
          if (!r->has_hash()) return done(absl::InternalError("answer to a hash is not a hash"));
          done(ContentHash{.endpoint = address,
                           .member_id = r->header().member_id(),
                           .hash = r->hash().hash(),
                           .applied_index = r->hash().applied_index(),
                           .revision = r->hash().revision(),
                           .key_count = r->hash().key_count()});
        },
        address);
  });
}

absl::StatusOr<bool> Client::CompareAndSwap(std::string_view key,
                                            const std::optional<std::string>& expected,
                                            std::string_view new_value, CallOptions options) {
  TxnRequest request;
  request.compare.push_back(expected.has_value()
                                ? Compare::Value(key, Compare::Result::kEqual, *expected)
                                : Compare::Missing(key));
  request.success.push_back(TxnOp::Put(key, new_value));
  absl::StatusOr<TxnResult> result = Txn(request, options);
  if (!result.ok()) return result.status();
  return result->succeeded;
}

}  // namespace stead

// ---- Auth management ----

namespace stead {
namespace {

absl::Status ToAuthStatus(absl::StatusOr<pb::ClientResponse> response) {
  if (!response.ok()) return response.status();
  if (!response->has_auth()) return absl::InternalError("answer to an auth call is not one");
  return absl::OkStatus();
}

pb::Permission PermissionToProto(const Permission& permission) {
  pb::Permission out;
  out.set_type(permission.type == Permission::Type::kReadWrite ? pb::Permission::TYPE_READWRITE
                                                               : pb::Permission::TYPE_READ);
  out.set_key(permission.key);
  out.set_range_end(permission.range_end);
  return out;
}

}  // namespace

absl::StatusOr<pb::ClientResponse> Client::Impl::CallAuth(pb::AuthRequest auth,
                                                         CallOptions options) {
  pb::ClientRequest request;
  const bool change = !auth.has_user_list() && !auth.has_role_list() && !auth.has_status();
  *request.mutable_auth() = std::move(auth);
  return Wait<absl::StatusOr<pb::ClientResponse>>([&](auto done) {
    Start(std::move(request), change ? Route::kLeader : Route::kAny, options.timeout,
                 [done = std::move(done)](absl::StatusOr<pb::ClientResponse> r) {
                   if (r.ok() && r->has_error()) return done(StatusFromError(r->error()));
                   done(std::move(r));
                 });
  });
}

absl::StatusOr<std::string> Client::AuthToken(CallOptions options) {
  return impl_->WaitForAuthToken(options.timeout > absl::ZeroDuration() ? options.timeout
                                                                       : absl::Seconds(5));
}

absl::Status Client::UserAdd(std::string_view name, std::string_view password,
                             CallOptions options) {
  pb::AuthRequest auth;
  auth.mutable_user_add()->set_name(std::string(name));
  auth.mutable_user_add()->set_password(std::string(password));
  return ToAuthStatus(impl_->CallAuth(std::move(auth), options));
}

absl::Status Client::UserDelete(std::string_view name, CallOptions options) {
  pb::AuthRequest auth;
  auth.mutable_user_delete()->set_name(std::string(name));
  return ToAuthStatus(impl_->CallAuth(std::move(auth), options));
}

absl::Status Client::UserChangePassword(std::string_view name, std::string_view password,
                                        CallOptions options) {
  pb::AuthRequest auth;
  auth.mutable_user_change_password()->set_name(std::string(name));
  auth.mutable_user_change_password()->set_password(std::string(password));
  return ToAuthStatus(impl_->CallAuth(std::move(auth), options));
}

absl::Status Client::UserGrantRole(std::string_view user, std::string_view role,
                                   CallOptions options) {
  pb::AuthRequest auth;
  auth.mutable_user_grant_role()->set_user(std::string(user));
  auth.mutable_user_grant_role()->set_role(std::string(role));
  return ToAuthStatus(impl_->CallAuth(std::move(auth), options));
}

absl::Status Client::UserRevokeRole(std::string_view user, std::string_view role,
                                    CallOptions options) {
  pb::AuthRequest auth;
  auth.mutable_user_revoke_role()->set_user(std::string(user));
  auth.mutable_user_revoke_role()->set_role(std::string(role));
  return ToAuthStatus(impl_->CallAuth(std::move(auth), options));
}

absl::StatusOr<std::vector<AuthUser>> Client::UserList(CallOptions options) {
  pb::AuthRequest auth;
  auth.mutable_user_list();
  STEAD_ASSIGN_OR_RETURN(pb::ClientResponse response, impl_->CallAuth(std::move(auth), options));
  std::vector<AuthUser> users;
  for (const pb::AuthUser& user : response.auth().users()) {
    users.push_back(AuthUser{user.name(), {user.roles().begin(), user.roles().end()}});
  }
  return users;
}

absl::Status Client::RoleAdd(std::string_view name, CallOptions options) {
  pb::AuthRequest auth;
  auth.mutable_role_add()->set_name(std::string(name));
  return ToAuthStatus(impl_->CallAuth(std::move(auth), options));
}

absl::Status Client::RoleDelete(std::string_view name, CallOptions options) {
  pb::AuthRequest auth;
  auth.mutable_role_delete()->set_name(std::string(name));
  return ToAuthStatus(impl_->CallAuth(std::move(auth), options));
}

absl::Status Client::RoleGrantPermission(std::string_view role, const Permission& permission,
                                         CallOptions options) {
  pb::AuthRequest auth;
  auth.mutable_role_grant_permission()->set_role(std::string(role));
  *auth.mutable_role_grant_permission()->mutable_permission() = PermissionToProto(permission);
  return ToAuthStatus(impl_->CallAuth(std::move(auth), options));
}

absl::Status Client::RoleRevokePermission(std::string_view role, std::string_view key,
                                          std::string_view range_end, CallOptions options) {
  pb::AuthRequest auth;
  auth.mutable_role_revoke_permission()->set_role(std::string(role));
  auth.mutable_role_revoke_permission()->set_key(std::string(key));
  auth.mutable_role_revoke_permission()->set_range_end(std::string(range_end));
  return ToAuthStatus(impl_->CallAuth(std::move(auth), options));
}

absl::StatusOr<std::vector<AuthRole>> Client::RoleList(CallOptions options) {
  pb::AuthRequest auth;
  auth.mutable_role_list();
  STEAD_ASSIGN_OR_RETURN(pb::ClientResponse response, impl_->CallAuth(std::move(auth), options));
  std::vector<AuthRole> roles;
  for (const pb::AuthRole& role : response.auth().roles()) {
    AuthRole& out = roles.emplace_back();
    out.name = role.name();
    for (const pb::Permission& permission : role.permissions()) {
      out.permissions.push_back(Permission{
          permission.type() == pb::Permission::TYPE_READWRITE ? Permission::Type::kReadWrite
                                                              : Permission::Type::kRead,
          permission.key(), permission.range_end()});
    }
  }
  return roles;
}

absl::Status Client::AuthEnable(CallOptions options) {
  pb::AuthRequest auth;
  auth.mutable_enable();
  return ToAuthStatus(impl_->CallAuth(std::move(auth), options));
}

absl::Status Client::AuthDisable(CallOptions options) {
  pb::AuthRequest auth;
  auth.mutable_disable();
  return ToAuthStatus(impl_->CallAuth(std::move(auth), options));
}

absl::StatusOr<AuthStatus> Client::GetAuthStatus(CallOptions options) {
  pb::AuthRequest auth;
  auth.mutable_status();
  STEAD_ASSIGN_OR_RETURN(pb::ClientResponse response, impl_->CallAuth(std::move(auth), options));
  return AuthStatus{response.auth().status().enabled(), response.auth().status().revision()};
}

}  // namespace stead
