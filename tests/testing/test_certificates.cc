#include "tests/testing/test_certificates.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

#include <cstdio>
#include <fstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/check.h"
#include "gtest/gtest.h"
#include "wire/tls_options.h"

namespace stead::testing {
namespace {

using ::stead::wire::EvpKeyPointer;
using ::stead::wire::X509Pointer;

EvpKeyPointer MakeKey() {
  EvpKeyPointer key(EVP_EC_gen("P-256"));
  STEAD_CHECK(key != nullptr) << "EVP_EC_gen failed";
  return key;
}

std::string ToPem(int (*write)(BIO*, void*), void* object) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  STEAD_CHECK(bio != nullptr);
  STEAD_CHECK(write(bio.get(), object) == 1) << "PEM encoding failed";
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

std::string CertificateToPem(X509* certificate) {
  return ToPem(
      [](BIO* bio, void* object) { return PEM_write_bio_X509(bio, static_cast<X509*>(object)); },
      certificate);
}

std::string KeyToPem(EVP_PKEY* key) {
  return ToPem(
      [](BIO* bio, void* object) {
        return PEM_write_bio_PrivateKey(bio, static_cast<EVP_PKEY*>(object), nullptr, nullptr, 0,
                                        nullptr, nullptr);
      },
      key);
}

void AddExtension(X509* certificate, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, issuer, certificate, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value.c_str());
  STEAD_CHECK(extension != nullptr) << "bad extension " << value;
  STEAD_CHECK(X509_add_ext(certificate, extension, -1) == 1);
  X509_EXTENSION_free(extension);
}

// A certificate for `key` named `common_name`, without issuer or signature yet.
X509Pointer NewCertificate(EVP_PKEY* key, const std::string& common_name, uint64_t serial,
                                  absl::Time not_before, absl::Time not_after) {
  X509Pointer certificate(X509_new());
  STEAD_CHECK(certificate != nullptr);
  STEAD_CHECK(X509_set_version(certificate.get(), 2) == 1);  // v3
  STEAD_CHECK(ASN1_INTEGER_set_uint64(X509_get_serialNumber(certificate.get()), serial) == 1);
  STEAD_CHECK(ASN1_TIME_set(X509_getm_notBefore(certificate.get()), absl::ToTimeT(not_before)) !=
              nullptr);
  STEAD_CHECK(ASN1_TIME_set(X509_getm_notAfter(certificate.get()), absl::ToTimeT(not_after)) !=
              nullptr);
  X509_NAME* name = X509_get_subject_name(certificate.get());
  STEAD_CHECK(X509_NAME_add_entry_by_txt(
                  name, "CN", MBSTRING_UTF8,
                  reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0) == 1);
  STEAD_CHECK(X509_set_pubkey(certificate.get(), key) == 1);
  return certificate;
}

}  // namespace

struct TestCertificateAuthority::Impl {
  EvpKeyPointer key;
  X509Pointer certificate;
  std::string certificate_pem;
  uint64_t next_serial = 1;
};

TestCertificateAuthority::TestCertificateAuthority(std::string common_name)
    : impl_(std::make_unique<Impl>()) {
  impl_->key = MakeKey();
  impl_->certificate =
      NewCertificate(impl_->key.get(), common_name, /*serial=*/1000,
                     absl::Now() - absl::Hours(24 * 30), absl::Now() + absl::Hours(24 * 30));
  X509* certificate = impl_->certificate.get();
  STEAD_CHECK(X509_set_issuer_name(certificate, X509_get_subject_name(certificate)) == 1);
  AddExtension(certificate, certificate, NID_basic_constraints, "critical,CA:TRUE");
  AddExtension(certificate, certificate, NID_key_usage, "critical,keyCertSign,cRLSign");
  AddExtension(certificate, certificate, NID_subject_key_identifier, "hash");
  STEAD_CHECK(X509_sign(certificate, impl_->key.get(), EVP_sha256()) > 0);
  impl_->certificate_pem = CertificateToPem(certificate);
}

TestCertificateAuthority::~TestCertificateAuthority() = default;

const std::string& TestCertificateAuthority::certificate_pem() const {
  return impl_->certificate_pem;
}

TestCertificate TestCertificateAuthority::Issue(const CertificateSpec& spec) {
  const uint64_t serial = spec.serial != 0 ? spec.serial : impl_->next_serial++;
  EvpKeyPointer key = MakeKey();
  X509Pointer certificate =
      NewCertificate(key.get(), spec.common_name, serial, spec.not_before, spec.not_after);
  X509* issuer = impl_->certificate.get();
  STEAD_CHECK(X509_set_issuer_name(certificate.get(), X509_get_subject_name(issuer)) == 1);
  AddExtension(certificate.get(), issuer, NID_basic_constraints, "critical,CA:FALSE");
  AddExtension(certificate.get(), issuer, NID_key_usage, "critical,digitalSignature");
  AddExtension(certificate.get(), issuer, NID_ext_key_usage, "serverAuth,clientAuth");
  AddExtension(certificate.get(), issuer, NID_authority_key_identifier, "keyid");
  std::vector<std::string> names;
  for (const std::string& dns : spec.dns_names) names.push_back(absl::StrCat("DNS:", dns));
  for (const std::string& ip : spec.ip_addresses) names.push_back(absl::StrCat("IP:", ip));
  if (!names.empty()) {
    AddExtension(certificate.get(), issuer, NID_subject_alt_name, absl::StrJoin(names, ","));
  }
  STEAD_CHECK(X509_sign(certificate.get(), impl_->key.get(), EVP_sha256()) > 0);
  return TestCertificate{CertificateToPem(certificate.get()), KeyToPem(key.get()), serial};
}

void ReplaceFile(const std::string& path, const std::string& contents) {
  const std::string aside = path + ".new";
  {
    std::ofstream out(aside, std::ios::binary | std::ios::trunc);
    out << contents;
    STEAD_CHECK(out.good()) << "cannot write " << aside;
  }
  STEAD_CHECK(std::rename(aside.c_str(), path.c_str()) == 0) << "cannot rename to " << path;
}

TestPemFiles WritePemFiles(const std::string& dir, const std::string& name,
                           const TestCertificate& certificate, const TestCertificateAuthority& ca) {
  TestPemFiles files{absl::StrCat(dir, "/", name, ".crt"), absl::StrCat(dir, "/", name, ".key"),
                     absl::StrCat(dir, "/", name, "-ca.crt")};
  ReplaceFile(files.cert_file, certificate.certificate_pem);
  ReplaceFile(files.key_file, certificate.private_key_pem);
  ReplaceFile(files.ca_file, ca.certificate_pem());
  return files;
}

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "/stead-tls-XXXXXX";
  STEAD_CHECK(::mkdtemp(pattern.data()) != nullptr) << "mkdtemp " << pattern;
  return pattern;
}

}  // namespace stead::testing
