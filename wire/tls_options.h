// TLS settings of one port or one client, and their validation.
//
// A port (client, peer, HTTP) is configured on its own with four settings, named like
// etcd's flags: --<port>-cert-file, --<port>-key-file, --<port>-trusted-ca-file and
// --<port>-cert-auth. Validation loads the files exactly as a TLS context would, so a
// node refuses a bad certificate at start-up with a message naming the flag, instead of
// failing every handshake later.
#ifndef STEAD_WIRE_TLS_OPTIONS_H_
#define STEAD_WIRE_TLS_OPTIONS_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace stead::wire {

// Which end of the handshake a context serves: the accepting side (a listening port)
// or the dialing side (stead::Client, a peer connecting to another member).
enum class TlsRole { kServer, kClient };

// How errors name each setting, so that a message points at what the operator typed.
struct TlsSettingNames {
  std::string cert_file = "--cert-file";
  std::string key_file = "--key-file";
  std::string trusted_ca_file = "--trusted-ca-file";
  std::string cert_auth = "--cert-auth";

  // The flag names of one port: ForPort("peer") names "--peer-cert-file", ...
  static TlsSettingNames ForPort(absl::string_view port);
};

// Every field has an initializer, so designated initializers may name any subset.
struct TlsOptions {
  // PEM file holding this side's certificate, optionally followed by intermediate CA
  // certificates. Required for a server; for a client only when the server asks for a
  // certificate (mutual TLS). Default: empty.
  std::string cert_file = {};
  // PEM file holding the private key of cert_file's first certificate, unencrypted.
  // Given exactly when cert_file is. Default: empty.
  std::string key_file = {};
  // PEM file of the CA certificates trusted to issue the other side's certificate. A
  // server needs it when require_peer_certificate is set; a client without it trusts
  // the system's default CA store. Default: empty.
  std::string trusted_ca_file = {};
  // Server only: refuse a handshake whose client presents no certificate issued by a
  // trusted CA (mutual TLS; etcd's --client-cert-auth). Without it a presented
  // certificate is still verified, and a client may present none. Default: false.
  bool require_peer_certificate = false;
  // For switching a running cluster to or from TLS by rolling restarts
  // (--tls-transition): a server also accepts plain connections, told apart by their
  // first byte; a client whose TLS handshake the server ends as a port without TLS
  // would connects again without TLS. Default: false.
  bool allow_plain = false;
  // How errors name the settings above. Default: the flag names without a port prefix.
  TlsSettingNames names = {};
};

struct X509Deleter {
  void operator()(X509* certificate) const { X509_free(certificate); }
};
struct EvpKeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using X509Pointer = std::unique_ptr<X509, X509Deleter>;
using EvpKeyPointer = std::unique_ptr<EVP_PKEY, EvpKeyDeleter>;

// The parsed contents of TlsOptions' files; what a TLS context is built from.
struct TlsMaterial {
  std::vector<X509Pointer> certificate_chain;  // leaf first; empty without cert_file
  EvpKeyPointer private_key;                   // null without key_file
  std::vector<X509Pointer> trusted_cas;        // empty without trusted_ca_file
};

// The bytes of TlsOptions' files; empty for a file not configured.
struct TlsFileContents {
  std::string cert_pem;
  std::string key_pem;
  std::string trusted_ca_pem;

  friend bool operator==(const TlsFileContents&, const TlsFileContents&) = default;
};

// Checks which settings `role` needs and reads the configured files. InvalidArgument as
// LoadTlsMaterial. Thread-safe.
absl::StatusOr<TlsFileContents> ReadTlsFiles(const TlsOptions& options, TlsRole role);

// Parses and checks `contents` read for `options`; errors as LoadTlsMaterial.
// Thread-safe.
absl::StatusOr<TlsMaterial> ParseTlsMaterial(const TlsOptions& options,
                                             const TlsFileContents& contents, absl::Time now);

// ReadTlsFiles, then ParseTlsMaterial: reads and checks `options`' files for `role` at time `now`.
// Errors name the setting (TlsOptions::names) and the path, and say what to do:
//  - InvalidArgument: a setting missing for this role (a server without a certificate,
//    a key without a certificate, cert auth without a trusted CA), an unreadable file,
//    a file holding no PEM certificate or key, a key that does not match the
//    certificate.
//  - FailedPrecondition: a certificate (ours or a trusted CA's) expired or not yet
//    valid at `now`.
// Thread-safe.
absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsOptions& options, TlsRole role,
                                            absl::Time now);

// LoadTlsMaterial without keeping the result: the check a node runs on its flags.
absl::Status ValidateTlsOptions(const TlsOptions& options, TlsRole role, absl::Time now);

}  // namespace stead::wire

#endif  // STEAD_WIRE_TLS_OPTIONS_H_
