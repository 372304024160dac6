// Certificates for TLS tests, made in process with OpenSSL's C API: no key is
// committed, nothing depends on the `openssl` command.
//
//   TestCertificateAuthority ca("stead test CA");
//   TestCertificate server = ca.Issue({.common_name = "stead-0",
//                                      .dns_names = {"stead-0.stead"},
//                                      .ip_addresses = {"127.0.0.1"}});
//   TestPemFiles files = WritePemFiles(dir, "server", server, ca);
//
// Keys are ECDSA P-256 (fast to make). Certificates are signed with SHA-256 and carry
// the extensions a real deployment's would: basic constraints, key usage, extended key
// usage (server and client authentication) and subject alternative names.
//
// Any OpenSSL failure here is a broken test environment, so it aborts (STEAD_CHECK).
// Not thread-safe per object; separate objects may be used from separate threads.
#ifndef STEAD_TESTS_TESTING_TEST_CERTIFICATES_H_
#define STEAD_TESTS_TESTING_TEST_CERTIFICATES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace stead::testing {

// What a leaf certificate says.
struct CertificateSpec {
  std::string common_name = "stead test";
  // Subject alternative names. (Every field has an initializer so that tests may use
  // designated initializers for any subset under -Wmissing-field-initializers.)
  std::vector<std::string> dns_names = {};     // DNS names
  std::vector<std::string> ip_addresses = {};  // IP addresses, "127.0.0.1"
  // Validity; the defaults make a certificate valid for a day around now.
  absl::Time not_before = absl::Now() - absl::Hours(1);
  absl::Time not_after = absl::Now() + absl::Hours(24);
  // 0 picks the authority's next serial number (1, 2, ...).
  uint64_t serial = 0;
};

// One certificate and its private key, PEM-encoded.
struct TestCertificate {
  std::string certificate_pem;
  std::string private_key_pem;
  uint64_t serial = 0;
};

// A self-signed certificate authority that issues leaf certificates. Its own
// certificate is valid from 30 days ago to 30 days ahead.
class TestCertificateAuthority {
 public:
  explicit TestCertificateAuthority(std::string common_name);
  ~TestCertificateAuthority();
  TestCertificateAuthority(const TestCertificateAuthority&) = delete;
  TestCertificateAuthority& operator=(const TestCertificateAuthority&) = delete;

  // The authority's own certificate, PEM: the trusted CA file of its leaves.
  const std::string& certificate_pem() const;
  // A leaf certificate signed by this authority.
  TestCertificate Issue(const CertificateSpec& spec);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Paths of the PEM files WritePemFiles wrote.
struct TestPemFiles {
  std::string cert_file;
  std::string key_file;
  std::string ca_file;
};

// Writes `certificate` and `ca`'s certificate as <dir>/<name>.crt, <name>.key and
// <name>-ca.crt, replacing each file by a rename so a reader never sees half a file.
TestPemFiles WritePemFiles(const std::string& dir, const std::string& name,
                           const TestCertificate& certificate, const TestCertificateAuthority& ca);
// Replaces the file at `path` with `contents` (written aside, then renamed over it).
void ReplaceFile(const std::string& path, const std::string& contents);
// A new empty directory under the test's temporary directory.
std::string MakeTempDir();

}  // namespace stead::testing

#endif  // STEAD_TESTS_TESTING_TEST_CERTIFICATES_H_
