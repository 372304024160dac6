// steadctl's auth commands: `user`, `role` and `auth` (docs/security.md), and how
// steadctl reads a password: from a file (its first line) or from the terminal with
// echo off, never from the command line.
//
// Thread-safety: one caller at a time (they print to stdout).
#ifndef STEAD_CLIENT_STEADCTL_AUTH_H_
#define STEAD_CLIENT_STEADCTL_AUTH_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "stead/client.h"

namespace stead::ctl {

extern const char kUserHelp[];
extern const char kRoleHelp[];
extern const char kAuthHelp[];

struct AuthFlags {
  std::vector<std::string> args;  // "user", "role" or "auth", the subcommand, its arguments
  bool json = false;
  absl::Duration timeout = absl::Seconds(5);
  std::string range_end;          // role grant/revoke-permission --range-end
  bool prefix = false;            // role grant/revoke-permission --prefix
  std::string new_password_file;  // user add / passwd --new-password-file
  bool no_password = false;       // user add --no-password
};

// Runs the command; InvalidArgument for a malformed one (the message says what is
// missing), else the cluster's answer.
absl::Status RunAuthCommand(Client& client, const AuthFlags& flags);

// The password in the first line of `file`, or when `file` is empty one typed on the
// terminal after `prompt`, with echo off. InvalidArgument when neither can be read.
absl::StatusOr<std::string> ReadPassword(const std::string& file, const std::string& prompt);

}  // namespace stead::ctl

#endif  // STEAD_CLIENT_STEADCTL_AUTH_H_
