// hello: write a key, read it back, list the members. Start a local cluster with
// scripts/run, then run this program (optionally with endpoints as arguments).
#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include "stead/client.h"

int main(int argc, char** argv) {
  stead::ClientOptions options;
  options.endpoints = {"127.0.0.1:2479", "127.0.0.1:2489", "127.0.0.1:2499"};
  if (argc > 1) options.endpoints.assign(argv + 1, argv + argc);

  absl::StatusOr<std::unique_ptr<stead::Client>> client = stead::Client::Create(options);
  if (!client.ok()) {
    std::fprintf(stderr, "%s\n", client.status().ToString().c_str());
    return 1;
  }

  // A write: retried across leader changes, applied exactly once.
  if (absl::Status status = (*client)->Put("greeting", "hello, stead"); !status.ok()) {
    std::fprintf(stderr, "put: %s\n", status.ToString().c_str());
    return 1;
  }

  // A linearizable read: sees every write acknowledged before it.
  absl::StatusOr<std::optional<std::string>> value = (*client)->Get("greeting");
  if (!value.ok()) {
    std::fprintf(stderr, "get: %s\n", value.status().ToString().c_str());
    return 1;
  }
  std::printf("greeting = %s\n", value->value_or("<absent>").c_str());

  absl::StatusOr<std::vector<stead::Member>> members = (*client)->MemberList();
  if (members.ok()) {
    for (const stead::Member& member : *members) {
      std::printf("%s %s%s\n", member.name.c_str(), member.client_address.c_str(),
                  member.is_leader ? " (leader)" : "");
    }
  }
  return 0;
}
