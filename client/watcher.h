// How stead::Client runs a watch (Client::Watch): a Watcher::State holds the stream's
// cursor and reopens the stream on another member, from the last progress revision,
// whenever it breaks for a reason that retrying can cure.
//
// Thread-safety: the state's work runs on its own strand; Cancel and the accessors may
// be called from any thread.
#ifndef STEAD_CLIENT_WATCHER_H_
#define STEAD_CLIENT_WATCHER_H_

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "base/asio.h"
#include "client/connection.h"
#include "proto/kv.pb.h"
#include "stead/client.h"

namespace stead::client_internal {

// What a watch needs of the client that opens it.
struct WatchContext {
  boost::asio::io_context* io = nullptr;
  std::function<std::shared_ptr<Connection>()> next_connection;  // members in turn
  std::function<uint64_t()> next_request_id;
  std::function<bool()> shutting_down;
  uint32_t max_frame_bytes = 0;
  absl::Duration initial_backoff;
  absl::Duration max_backoff;
  // The token to open a watch with (empty: none), and a request to get a new one after
  // an UNAUTHENTICATED answer (the watch resumes a few times meanwhile).
  std::function<std::string()> auth_token = [] { return std::string(); };
  std::function<void()> refresh_auth_token = [] {};
};

// Opens the watch of `request`; the Watcher cancels it when destroyed.
std::unique_ptr<Watcher> StartWatch(WatchContext context, pb::WatchRequest request,
                                    WatchCallback on_events,
                                    std::function<void(absl::Status)> on_end);

}  // namespace stead::client_internal

#endif  // STEAD_CLIENT_WATCHER_H_
