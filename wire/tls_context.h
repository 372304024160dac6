// TLS contexts built from TlsOptions, and a provider that reloads them when the files
// change.
//
// Every context: TLS 1.2 or newer; for TLS 1.2 only ECDHE key exchange with AEAD
// ciphers (AES-GCM, ChaCha20-Poly1305), for TLS 1.3 OpenSSL's default suites (all
// modern); no compression; no renegotiation. A server with a trusted CA verifies the
// client certificates presented (and requires one with require_peer_certificate); a
// client always verifies the server's chain, and Stream checks its name per connection.
//
// Rotation: cert-manager and Kubernetes rewrite a mounted Secret's files in place. A
// TlsContextProvider compares the files' bytes with those it last loaded, at most once
// per check_interval when a new connection asks for the context, and builds a new
// context when they differ. A connection keeps the context it started with (a
// shared_ptr), so established connections are never dropped by a rotation. A reload
// that fails (a half-written file, a key that does not match the certificate, an
// expired certificate) keeps the previous context and logs why, once per distinct
// failure; the next change of the files tries again.
#ifndef STEAD_WIRE_TLS_CONTEXT_H_
#define STEAD_WIRE_TLS_CONTEXT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/log.h"
#include "base/mutex.h"
#include "wire/asio_ssl.h"
#include "wire/tls_options.h"

namespace stead::wire {

// The TLS 1.2 cipher list of every context (TLS 1.3 suites are OpenSSL's defaults).
inline constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// A context for `role` from already loaded material. InvalidArgument if OpenSSL refuses
// the material (it was checked when loaded, so this means an unsupported key type).
absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> MakeTlsContext(
    const TlsOptions& options, TlsRole role, const TlsMaterial& material);

struct TlsReloadOptions {
  // Longest time between two looks at the files, counted from the last look, taken
  // only when a connection asks for the context. Zero looks on every Current().
  // Default: 1 s.
  absl::Duration check_interval = absl::Seconds(1);
  // The clock for check_interval and for the certificates' validity.
  // Default: absl::Now.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
};

// Hands out the current TLS context of one port (or one client) and reloads it when
// its files change. Thread-safe: every method may be called from any thread.
class TlsContextProvider {
 public:
  // Loads the files once. Errors as LoadTlsMaterial: a node refuses to start on them.
  static absl::StatusOr<std::unique_ptr<TlsContextProvider>> Create(TlsOptions options,
                                                                    TlsRole role, Logger logger,
                                                                    TlsReloadOptions reload = {});
  TlsContextProvider(const TlsContextProvider&) = delete;
  TlsContextProvider& operator=(const TlsContextProvider&) = delete;

  // The context for a new connection: first reloads if check_interval has passed since
  // the last look at the files and they changed. Never null; a failed reload leaves
  // the previous context (see the file comment).
  std::shared_ptr<boost::asio::ssl::context> Current();

  // Looks at the files now and reloads if they changed. OK when they did not change or
  // the reload succeeded; otherwise the reload's error (the old context stays).
  absl::Status CheckForChanges();

  const TlsOptions& options() const { return options_; }
  TlsRole role() const { return role_; }

 private:
  TlsContextProvider(TlsOptions options, TlsRole role, Logger logger, TlsReloadOptions reload,
                     TlsFileContents contents, std::shared_ptr<boost::asio::ssl::context> context);

  // Reads the files and, when they differ from seen_, builds and installs a context.
  absl::Status Reload() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);
  // Logs a failed reload unless it is the failure logged last.
  void ReportFailure(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);

  const TlsOptions options_;
  const TlsRole role_;
  const Logger logger_;
  const TlsReloadOptions reload_;

  // Serialises reloads. Unlike mu_ it is held while the files are read: Current() only
  // tries it, so a connection never waits for another's reload.
  Mutex reload_mu_;
  TlsFileContents seen_ ABSL_GUARDED_BY(reload_mu_);      // bytes last tried, loaded or not
  std::string last_failure_ ABSL_GUARDED_BY(reload_mu_);  // empty after a success

  Mutex mu_;
  // The context of new connections; replaced only by a successful reload.
  std::shared_ptr<boost::asio::ssl::context> current_ ABSL_GUARDED_BY(mu_);
  absl::Time last_check_ ABSL_GUARDED_BY(mu_);
};

}  // namespace stead::wire

#endif  // STEAD_WIRE_TLS_CONTEXT_H_
