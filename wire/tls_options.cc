#include "wire/tls_options.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "wire/tls_verify.h"

namespace stead::wire {
namespace {

// Largest PEM file read: a chain of a few certificates is a few KiB; anything this big
// is the wrong file.
constexpr size_t kMaxPemFileBytes = 1u << 20;

absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view setting) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(setting, " ", path, ": cannot read it (",
                                                   std::strerror(errno),
                                                   "): check the path and its permissions"));
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  std::string bytes = std::move(contents).str();
  if (bytes.size() > kMaxPemFileBytes) {
    return absl::InvalidArgumentError(absl::StrCat(setting, " ", path, ": ", bytes.size(),
                                                   " bytes is not a PEM certificate or key file"));
  }
  return bytes;
}

std::unique_ptr<BIO, decltype(&BIO_free)> MemoryBio(const std::string& bytes) {
  return {BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())), &BIO_free};
}

// Every certificate in `pem`, in order; InvalidArgument when there is none.
absl::StatusOr<std::vector<X509Pointer>> ParseCertificates(const std::string& pem,
                                                           absl::string_view setting,
                                                           const std::string& path) {
  auto bio = MemoryBio(pem);
  std::vector<X509Pointer> certificates;
  while (X509* certificate = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certificates.emplace_back(certificate);
  }
  // The loop ends on "no start line" at the end of the data; that error is expected.
  ERR_clear_error();
  if (certificates.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        setting, " ", path, ": holds no PEM certificate (\"-----BEGIN CERTIFICATE-----\")"));
  }
  return certificates;
}

absl::StatusOr<EvpKeyPointer> ParsePrivateKey(const std::string& pem, absl::string_view setting,
                                              const std::string& path) {
  auto bio = MemoryBio(pem);
  // A null passphrase callback with no user data: an encrypted key fails to load
  // instead of prompting on the terminal.
  EvpKeyPointer key(PEM_read_bio_PrivateKey(
      bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(setting, " ", path, ": holds no unencrypted PEM private key"));
  }
  return key;
}

// FailedPrecondition when `certificate` is not valid at `now`.
absl::Status CheckValidity(X509* certificate, absl::string_view what, absl::Time now) {
  time_t now_seconds = absl::ToTimeT(now);
  const ASN1_TIME* not_before = X509_get0_notBefore(certificate);
  const ASN1_TIME* not_after = X509_get0_notAfter(certificate);
  const std::string now_text = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", now, absl::UTCTimeZone());
  if (X509_cmp_time(not_after, &now_seconds) < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " expired at ", FormatCertificateTime(not_after), " (now ", now_text, "): renew it"));
  }
  if (X509_cmp_time(not_before, &now_seconds) > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " is not valid before ", FormatCertificateTime(not_before), " (now ",
                     now_text, "): check the clocks of this host and of the issuer"));
  }
  return absl::OkStatus();
}

}  // namespace

TlsSettingNames TlsSettingNames::ForPort(absl::string_view port) {
  return TlsSettingNames{
      absl::StrCat("--", port, "-cert-file"), absl::StrCat("--", port, "-key-file"),
      absl::StrCat("--", port, "-trusted-ca-file"), absl::StrCat("--", port, "-cert-auth")};
}

absl::StatusOr<TlsFileContents> ReadTlsFiles(const TlsOptions& options, TlsRole role) {
  const TlsSettingNames& names = options.names;
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(names.cert_file, " and ", names.key_file,
                                                   " go together: set both or neither"));
  }
  if (role == TlsRole::kServer && options.cert_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("TLS on this port needs a certificate: set ",
                                                   names.cert_file, " and ", names.key_file));
  }
  if (role == TlsRole::kServer && options.require_peer_certificate &&
      options.trusted_ca_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(names.cert_auth, " needs ",
                                                   names.trusted_ca_file,
                                                   " (the CA that issues client certificates)"));
  }
  TlsFileContents contents;
  if (!options.cert_file.empty()) {
    STEAD_ASSIGN_OR_RETURN(contents.cert_pem, ReadPemFile(options.cert_file, names.cert_file));
    STEAD_ASSIGN_OR_RETURN(contents.key_pem, ReadPemFile(options.key_file, names.key_file));
  }
  if (!options.trusted_ca_file.empty()) {
    STEAD_ASSIGN_OR_RETURN(contents.trusted_ca_pem,
                           ReadPemFile(options.trusted_ca_file, names.trusted_ca_file));
  }
  return contents;
}

absl::StatusOr<TlsMaterial> ParseTlsMaterial(const TlsOptions& options,
                                             const TlsFileContents& contents, absl::Time now) {
  const TlsSettingNames& names = options.names;
  TlsMaterial material;
  if (!options.cert_file.empty()) {
    STEAD_ASSIGN_OR_RETURN(
        material.certificate_chain,
        ParseCertificates(contents.cert_pem, names.cert_file, options.cert_file));
    STEAD_ASSIGN_OR_RETURN(material.private_key,
                           ParsePrivateKey(contents.key_pem, names.key_file, options.key_file));
    X509* leaf = material.certificate_chain.front().get();
    if (X509_check_private_key(leaf, material.private_key.get()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          absl::StrCat("the key in ", names.key_file, " ", options.key_file,
                       " does not match the certificate in ", names.cert_file, " ",
                       options.cert_file, ": give the key the certificate was issued for"));
    }
    STEAD_RETURN_IF_ERROR(CheckValidity(
        leaf, absl::StrCat("the certificate in ", names.cert_file, " ", options.cert_file), now));
  }
  if (!options.trusted_ca_file.empty()) {
    STEAD_ASSIGN_OR_RETURN(
        material.trusted_cas,
        ParseCertificates(contents.trusted_ca_pem, names.trusted_ca_file, options.trusted_ca_file));
    for (const X509Pointer& ca : material.trusted_cas) {
      STEAD_RETURN_IF_ERROR(CheckValidity(
          ca.get(),
          absl::StrCat("a CA certificate in ", names.trusted_ca_file, " ", options.trusted_ca_file),
          now));
    }
  }
  return material;
}

absl::StatusOr<TlsMaterial> LoadTlsMaterial(const TlsOptions& options, TlsRole role,
                                            absl::Time now) {
  STEAD_ASSIGN_OR_RETURN(TlsFileContents contents, ReadTlsFiles(options, role));
  return ParseTlsMaterial(options, contents, now);
}

absl::Status ValidateTlsOptions(const TlsOptions& options, TlsRole role, absl::Time now) {
  return LoadTlsMaterial(options, role, now).status();
}

}  // namespace stead::wire
