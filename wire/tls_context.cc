#include "wire/tls_context.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "wire/tls_verify.h"

namespace stead::wire {
namespace {

std::string OpenSslErrors() {
  std::string text;
  while (const unsigned long code = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    absl::StrAppend(&text, text.empty() ? "" : "; ", buffer);
  }
  return text.empty() ? "unknown OpenSSL error" : text;
}

absl::Status Refused(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("OpenSSL refused ", what, ": ", OpenSslErrors()));
}

}  // namespace

absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> MakeTlsContext(
    const TlsOptions& options, TlsRole role, const TlsMaterial& material) {
  auto context = std::make_shared<boost::asio::ssl::context>(
      role == TlsRole::kServer ? boost::asio::ssl::context::tls_server
                               : boost::asio::ssl::context::tls_client);
  SSL_CTX* handle = context->native_handle();
  if (SSL_CTX_set_min_proto_version(handle, TLS1_2_VERSION) != 1) {
    return Refused("the minimum version TLS 1.2");
  }
  SSL_CTX_set_options(
      handle, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_set_cipher_list(handle, kTls12Ciphers) != 1) return Refused("the cipher list");

  if (!material.certificate_chain.empty()) {
    if (SSL_CTX_use_certificate(handle, material.certificate_chain.front().get()) != 1) {
      return Refused(absl::StrCat("the certificate in ", options.cert_file));
    }
    for (size_t i = 1; i < material.certificate_chain.size(); ++i) {
      if (SSL_CTX_add1_chain_cert(handle, material.certificate_chain[i].get()) != 1) {
        return Refused(absl::StrCat("an intermediate certificate in ", options.cert_file));
      }
    }
    if (SSL_CTX_use_PrivateKey(handle, material.private_key.get()) != 1 ||
        SSL_CTX_check_private_key(handle) != 1) {
      return Refused(absl::StrCat("the key in ", options.key_file));
    }
  }

  X509_STORE* store = SSL_CTX_get_cert_store(handle);
  for (const X509Pointer& ca : material.trusted_cas) {
    if (X509_STORE_add_cert(store, ca.get()) != 1) {
      return Refused(absl::StrCat("a CA certificate in ", options.trusted_ca_file));
    }
    // Tells clients which issuers this server accepts, so one holding several
    // certificates presents the right one.
    if (role == TlsRole::kServer) SSL_CTX_add_client_CA(handle, ca.get());
  }

  int verify_mode = SSL_VERIFY_NONE;
  if (role == TlsRole::kClient) {
    verify_mode = SSL_VERIFY_PEER;
    if (material.trusted_cas.empty() && SSL_CTX_set_default_verify_paths(handle) != 1) {
      return Refused("the system's CA store");
    }
  } else if (options.require_peer_certificate) {
    verify_mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  } else if (!material.trusted_cas.empty()) {
    verify_mode = SSL_VERIFY_PEER;
  }
  SSL_CTX_set_verify(handle, verify_mode, nullptr);
  return context;
}

absl::StatusOr<std::unique_ptr<TlsContextProvider>> TlsContextProvider::Create(
    TlsOptions options, TlsRole role, Logger logger, TlsReloadOptions reload) {
  STEAD_ASSIGN_OR_RETURN(TlsFileContents contents, ReadTlsFiles(options, role));
  STEAD_ASSIGN_OR_RETURN(TlsMaterial material, ParseTlsMaterial(options, contents, reload.clock()));
  STEAD_ASSIGN_OR_RETURN(std::shared_ptr<boost::asio::ssl::context> context,
                         MakeTlsContext(options, role, material));
  return std::unique_ptr<TlsContextProvider>(
      new TlsContextProvider(std::move(options), role, std::move(logger), std::move(reload),
                             std::move(contents), std::move(context)));
}

TlsContextProvider::TlsContextProvider(TlsOptions options, TlsRole role, Logger logger,
                                       TlsReloadOptions reload, TlsFileContents contents,
                                       std::shared_ptr<boost::asio::ssl::context> context)
    : options_(std::move(options)),
      role_(role),
      logger_(std::move(logger)),
      reload_(std::move(reload)),
      seen_(std::move(contents)),
      current_(std::move(context)),
      last_check_(reload_.clock()) {}

std::shared_ptr<boost::asio::ssl::context> TlsContextProvider::Current() {
  bool due = false;
  {
    MutexLock lock(&mu_);
    due = reload_.clock() - last_check_ >= reload_.check_interval;
  }
  // Another connection's reload in progress: use the current context rather than wait.
  if (due && reload_mu_.TryLock()) {
    // A failure is logged by Reload and leaves the current context in place.
    Reload().IgnoreError();
    reload_mu_.Unlock();
  }
  MutexLock lock(&mu_);
  return current_;
}

absl::Status TlsContextProvider::CheckForChanges() {
  MutexLock reload_lock(&reload_mu_);
  return Reload();
}

absl::Status TlsContextProvider::Reload() {
  const absl::Time now = reload_.clock();
  {
    MutexLock lock(&mu_);
    last_check_ = now;
  }
  // The files' bytes, not their mtime, decide: a rewrite within the file system's
  // timestamp granularity that keeps the size would otherwise go unnoticed. The files
  // are a few KiB, read at most once per check_interval.
  absl::StatusOr<TlsFileContents> contents = ReadTlsFiles(options_, role_);
  if (!contents.ok()) {
    // Forgetting what was seen makes the files' return a change: it is loaded and
    // logged, and the same failure later is logged again.
    seen_ = TlsFileContents();
    ReportFailure(contents.status());
    return contents.status();
  }
  if (*contents == seen_) return absl::OkStatus();
  seen_ = *std::move(contents);
  absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> context;
  absl::StatusOr<TlsMaterial> material = ParseTlsMaterial(options_, seen_, now);
  if (material.ok()) context = MakeTlsContext(options_, role_, *material);
  const absl::Status status = material.ok() ? context.status() : material.status();
  if (!status.ok()) {
    ReportFailure(status);
    return status;
  }
  {
    MutexLock lock(&mu_);
    current_ = *std::move(context);
  }
  last_failure_.clear();
  X509* leaf =
      material->certificate_chain.empty() ? nullptr : material->certificate_chain.front().get();
  STEAD_LOG(logger_, Info) << "TLS files reloaded"
                           << (leaf != nullptr
                                   ? absl::StrCat(": certificate ", DescribeCertificate(leaf))
                                   : std::string())
                           << "; new connections use them, open ones keep theirs";
  return absl::OkStatus();
}

void TlsContextProvider::ReportFailure(const absl::Status& status) {
  if (status.ToString() == last_failure_) return;
  last_failure_ = status.ToString();
  STEAD_LOG(logger_, Warning) << "TLS files not reloaded, still using the previous certificate: "
                              << status.message();
}

}  // namespace stead::wire
