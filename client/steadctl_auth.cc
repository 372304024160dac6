#include "client/steadctl_auth.h"

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/steadctl_io.h"

namespace stead::ctl {

const char kUserHelp[] =
    "usage: steadctl user add NAME [--new-password-file=FILE | --no-password]\n"
    "       steadctl user passwd NAME [--new-password-file=FILE]\n"
    "       steadctl user delete NAME\n"
    "       steadctl user list\n"
    "       steadctl user grant-role USER ROLE | revoke-role USER ROLE\n"
    "Manages users (needs the root role once auth is enabled). The new password is\n"
    "read from FILE (its first line) or typed on the terminal with echo off, never\n"
    "taken from the command line; --no-password makes a user that only a client\n"
    "certificate naming it (CN) can authenticate. A changed password or a deleted\n"
    "user invalidates that user's tokens. The role `root` is built in.\n";

const char kRoleHelp[] =
    "usage: steadctl role add NAME | delete NAME | list\n"
    "       steadctl role grant-permission ROLE read|readwrite KEY [--range-end=END | --prefix]\n"
    "       steadctl role revoke-permission ROLE KEY [--range-end=END | --prefix]\n"
    "Manages roles (needs the root role once auth is enabled). A permission covers the\n"
    "key KEY, the keys [KEY, END) with --range-end (END \\0 or \"\\\\0\": every key >= KEY),\n"
    "or every key starting with KEY with --prefix. readwrite includes read. A revoke\n"
    "names the key and range exactly as granted.\n";

const char kAuthHelp[] =
    "usage: steadctl auth enable | disable | status\n"
    "enable needs a user root holding the role root (exit 6 otherwise): create them,\n"
    "grant the roles your clients need, make the clients send credentials, then\n"
    "enable. From then on every request needs a user (--user, or a client certificate\n"
    "with --client-cert-auth) with the permission; denied requests exit 8.\n";

namespace {

absl::Status Usage(const char* help) {
  return absl::InvalidArgumentError(absl::StrCat("usage error; see:\n", help));
}

std::string RangeEnd(const AuthFlags& flags, const std::string& key) {
  if (flags.prefix) return PrefixEnd(key);
  if (flags.range_end == "\\0") return std::string(1, '\0');
  return flags.range_end;
}

absl::StatusOr<std::string> NewPassword(const AuthFlags& flags, const std::string& user) {
  return ReadPassword(flags.new_password_file, absl::StrCat("New password of ", user, ": "));
}

absl::Status UserCommand(Client& client, const AuthFlags& flags) {
  const std::vector<std::string>& a = flags.args;
  const CallOptions call{.timeout = flags.timeout};
  const std::string sub = a.size() >= 2 ? a[1] : "";
  if (sub == "list" && a.size() == 2) {
    absl::StatusOr<std::vector<AuthUser>> users = client.UserList(call);
    if (!users.ok()) return users.status();
    Json rows = Json::array();
    for (const AuthUser& user : *users) {
      if (flags.json) {
        Json row;
        SetBytes(row, "name", user.name);
        row["roles"] = Json::array();
        for (const std::string& role : user.roles) {
          Json name;
          SetBytes(name, "name", role);
          row["roles"].push_back(name["name"]);
        }
        rows.push_back(std::move(row));
      } else {
        std::printf("%s\t%s\n", EscapeBytes(user.name).c_str(),
                    EscapeBytes(absl::StrJoin(user.roles, ",")).c_str());
      }
    }
    if (flags.json) PrintJson({{"users", std::move(rows)}});
    return absl::OkStatus();
  }
  if ((sub == "add" || sub == "passwd") && a.size() == 3) {
    std::string password;
    if (!flags.no_password) {
      absl::StatusOr<std::string> typed = NewPassword(flags, a[2]);
      if (!typed.ok()) return typed.status();
      if (typed->empty()) return absl::InvalidArgumentError("an empty password (or --no-password)");
      password = *std::move(typed);
    } else if (sub == "passwd") {
      return Usage(kUserHelp);
    }
    absl::Status status = sub == "add" ? client.UserAdd(a[2], password, call)
                                       : client.UserChangePassword(a[2], password, call);
    if (status.ok() && !flags.json) std::printf("user %s %s\n", a[2].c_str(), sub == "add" ? "added" : "updated");
    return status;
  }
  if (sub == "delete" && a.size() == 3) {
    absl::Status status = client.UserDelete(a[2], call);
    if (status.ok() && !flags.json) std::printf("user %s deleted\n", a[2].c_str());
    return status;
  }
  if ((sub == "grant-role" || sub == "revoke-role") && a.size() == 4) {
    absl::Status status = sub == "grant-role" ? client.UserGrantRole(a[2], a[3], call)
                                              : client.UserRevokeRole(a[2], a[3], call);
    if (status.ok() && !flags.json) {
      std::printf("role %s %s user %s\n", a[3].c_str(),
                  sub == "grant-role" ? "granted to" : "revoked from", a[2].c_str());
    }
    return status;
  }
  return Usage(kUserHelp);
}

absl::Status RoleCommand(Client& client, const AuthFlags& flags) {
  const std::vector<std::string>& a = flags.args;
  const CallOptions call{.timeout = flags.timeout};
  const std::string sub = a.size() >= 2 ? a[1] : "";
  if (flags.prefix && !flags.range_end.empty()) {
    return absl::InvalidArgumentError("--prefix and --range-end exclude each other");
  }
  if (sub == "list" && a.size() == 2) {
    absl::StatusOr<std::vector<AuthRole>> roles = client.RoleList(call);
    if (!roles.ok()) return roles.status();
    Json rows = Json::array();
    for (const AuthRole& role : *roles) {
      Json permissions = Json::array();
      if (!flags.json) std::printf("%s\n", EscapeBytes(role.name).c_str());
      for (const Permission& p : role.permissions) {
        const char* type = p.type == Permission::Type::kReadWrite ? "readwrite" : "read";
        if (flags.json) {
          Json row;
          row["type"] = type;
          SetBytes(row, "key", p.key);
          SetBytes(row, "range_end", p.range_end);
          permissions.push_back(std::move(row));
        } else {
          std::printf("\t%s\t%s\t%s\n", type, EscapeBytes(p.key).c_str(),
                      EscapeBytes(p.range_end).c_str());
        }
      }
      if (flags.json) {
        Json row;
        SetBytes(row, "name", role.name);
        row["permissions"] = std::move(permissions);
        rows.push_back(std::move(row));
      }
    }
    if (flags.json) PrintJson({{"roles", std::move(rows)}});
    return absl::OkStatus();
  }
  if ((sub == "add" || sub == "delete") && a.size() == 3) {
    absl::Status status = sub == "add" ? client.RoleAdd(a[2], call) : client.RoleDelete(a[2], call);
    if (status.ok() && !flags.json) std::printf("role %s %s\n", a[2].c_str(), sub == "add" ? "added" : "deleted");
    return status;
  }
  if (sub == "grant-permission" && a.size() == 5) {
    Permission permission;
    if (a[3] == "read") {
      permission.type = Permission::Type::kRead;
    } else if (a[3] == "readwrite") {
      permission.type = Permission::Type::kReadWrite;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("a permission is read or readwrite, not '", a[3], "'"));
    }
    permission.key = a[4];
    permission.range_end = RangeEnd(flags, a[4]);
    absl::Status status = client.RoleGrantPermission(a[2], permission, call);
    if (status.ok() && !flags.json) std::printf("permission granted to role %s\n", a[2].c_str());
    return status;
  }
  if (sub == "revoke-permission" && a.size() == 4) {
    absl::Status status = client.RoleRevokePermission(a[2], a[3], RangeEnd(flags, a[3]), call);
    if (status.ok() && !flags.json) std::printf("permission revoked from role %s\n", a[2].c_str());
    return status;
  }
  return Usage(kRoleHelp);
}

absl::Status AuthCommand(Client& client, const AuthFlags& flags) {
  const CallOptions call{.timeout = flags.timeout};
  if (flags.args.size() != 2) return Usage(kAuthHelp);
  const std::string& sub = flags.args[1];
  if (sub == "enable" || sub == "disable") {
    absl::Status status = sub == "enable" ? client.AuthEnable(call) : client.AuthDisable(call);
    if (status.ok() && !flags.json) std::printf("auth %sd\n", sub.c_str());
    return status;
  }
  if (sub == "status") {
    absl::StatusOr<AuthStatus> status = client.GetAuthStatus(call);
    if (!status.ok()) return status.status();
    if (flags.json) {
      PrintJson({{"enabled", status->enabled}, {"revision", status->revision}});
    } else {
      std::printf("enabled\t%s\nrevision\t%lld\n", status->enabled ? "true" : "false",
                  static_cast<long long>(status->revision));
    }
    return absl::OkStatus();
  }
  return Usage(kAuthHelp);
}

}  // namespace

absl::Status RunAuthCommand(Client& client, const AuthFlags& flags) {
  if (flags.args.empty()) return absl::InvalidArgumentError("no command");
  if (flags.args[0] == "user") return UserCommand(client, flags);
  if (flags.args[0] == "role") return RoleCommand(client, flags);
  return AuthCommand(client, flags);
}

absl::StatusOr<std::string> ReadPassword(const std::string& file, const std::string& prompt) {
  std::string password;
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read the password file ", file));
    std::getline(in, password);
  } else {
    const int tty = ::open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (tty < 0) {
      return absl::InvalidArgumentError(
          "no terminal to type the password on: give a password file");
    }
    termios saved{};
    const bool is_terminal = ::tcgetattr(tty, &saved) == 0;
    if (is_terminal) {
      termios quiet = saved;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      ::tcsetattr(tty, TCSAFLUSH, &quiet);
    }
    if (::write(tty, prompt.data(), prompt.size()) < 0) {
      // A prompt that cannot be shown still reads the password.
    }
    char c = 0;
    while (::read(tty, &c, 1) == 1 && c != '\n' && password.size() < 4096) password.push_back(c);
    if (is_terminal) ::tcsetattr(tty, TCSAFLUSH, &saved);
    if (::write(tty, "\n", 1) < 0) {
      // Only cosmetic.
    }
    ::close(tty);
  }
  if (!password.empty() && password.back() == '\r') password.pop_back();
  return password;
}

}  // namespace stead::ctl
