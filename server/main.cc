// stead: one member of a stead cluster as a process. Everything is in stead::Node; this
// only reads the configuration, starts the node and turns signals into a shutdown.
//
// Exit status (also in --help): 0 after a clean shutdown, 2 for a configuration
// error, 1 when the member fails to start or stops after an error it cannot continue
// from (the log says what to do).
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "server/config.h"
#include "server/listener.h"
#include "stead/node.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  absl::StatusOr<stead::server::ParsedCommandLine> parsed =
      stead::server::ParseServerCommandLine(args, stead::server::ProcessEnvironment());
  if (!parsed.ok()) {
    std::cerr << "stead: " << parsed.status().message() << "\n(see stead --help)\n";
    return kExitUsage;
  }
  if (parsed->help) {
    std::cout << stead::server::ServerUsage();
    return kExitOk;
  }
  if (parsed->version) {
    std::cout << "stead " << STEAD_VERSION << "\n";
    return kExitOk;
  }

  // Signals are taken by sigwait below, never by a handler: block them before any
  // thread starts so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A peer or client closing its socket must not kill the process.
  signal(SIGPIPE, SIG_IGN);
  // Every connection is a descriptor: take all the system allows. The node sizes its
  // connection caps from the limit and logs it.
  if (absl::StatusOr<uint64_t> limit = stead::server::RaiseOpenFileLimit(); !limit.ok()) {
    std::cerr << "stead: keeping the open file limit: " << limit.status().message() << "\n";
  }

  absl::StatusOr<std::unique_ptr<stead::Node>> node = stead::server::StartNode(parsed->config);
  if (!node.ok()) {
    std::cerr << "stead: cannot start " << parsed->config.name << ": " << node.status().message()
              << "\n";
    return kExitFailure;
  }

  for (;;) {
    const timespec poll = {1, 0};
    const int received = sigtimedwait(&signals, nullptr, &poll);
    if (received == SIGTERM || received == SIGINT) break;
    // Between signals: a member that failed for good exits so that its supervisor
    // (kubelet, systemd, the test) restarts it and it recovers from its WAL.
    if ((*node)->Status().state == "failed") {
      std::cerr << "stead: " << parsed->config.name
                << " stopped after an error: " << (*node)->Status().unhealthy_reason << "\n";
      node->reset();
      return kExitFailure;
    }
  }
  const absl::Status shutdown = (*node)->Shutdown();
  if (!shutdown.ok()) std::cerr << "stead: shutdown: " << shutdown.message() << "\n";
  node->reset();
  return kExitOk;
}
