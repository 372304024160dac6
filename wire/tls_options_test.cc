#include "wire/tls_options.h"

#include <functional>
#include <string>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_certificates.h"

namespace stead::wire {
namespace {

using ::stead::testing::CertificateSpec;
using ::stead::testing::StatusIs;
using ::stead::testing::TestCertificate;
using ::stead::testing::TestCertificateAuthority;
using ::stead::testing::TestPemFiles;
using ::stead::testing::WritePemFiles;

// Each bad setting is refused with the most specific code and a message naming the
// flag the operator typed. Method: one valid server configuration, then one change
// per row, validated as the client port's options.
TEST(TlsOptions, ValidationNamesTheFlagOfEachProblem) {
  const std::string dir = ::stead::testing::MakeTempDir();
  TestCertificateAuthority ca("stead test CA");
  TestCertificateAuthority other_ca("another CA");
  const TestPemFiles good = WritePemFiles(dir, "good", ca.Issue({.common_name = "stead-0"}), ca);
  const TestPemFiles other = WritePemFiles(dir, "other", other_ca.Issue({}), other_ca);
  const TestPemFiles expired = WritePemFiles(dir, "expired",
                                             ca.Issue({.not_before = absl::Now() - absl::Hours(48),
                                                       .not_after = absl::Now() - absl::Hours(24)}),
                                             ca);
  const TestPemFiles future = WritePemFiles(dir, "future",
                                            ca.Issue({.not_before = absl::Now() + absl::Hours(24),
                                                      .not_after = absl::Now() + absl::Hours(48)}),
                                            ca);
  const std::string garbage = dir + "/garbage.pem";
  ::stead::testing::ReplaceFile(garbage, "not a certificate\n");

  const struct {
    std::string name;
    std::function<void(TlsOptions&)> change;
    TlsRole role;
    absl::StatusCode code;
    std::string message;
  } cases[] = {
      {"valid server", [](TlsOptions&) {}, TlsRole::kServer, absl::StatusCode::kOk, ""},
      {"client without files trusts the system store",
       [](TlsOptions& o) { o = TlsOptions{.names = o.names}; }, TlsRole::kClient,
       absl::StatusCode::kOk, ""},
      {"missing certificate file", [&](TlsOptions& o) { o.cert_file = dir + "/absent.crt"; },
       TlsRole::kServer, absl::StatusCode::kInvalidArgument,
       "--client-cert-file " + dir + "/absent.crt: cannot read it (No such file or directory)"},
      {"server without certificate",
       [](TlsOptions& o) {
         o.cert_file.clear();
         o.key_file.clear();
       },
       TlsRole::kServer, absl::StatusCode::kInvalidArgument,
       "needs a certificate: set --client-cert-file"},
      {"key without certificate", [](TlsOptions& o) { o.cert_file.clear(); }, TlsRole::kClient,
       absl::StatusCode::kInvalidArgument, "--client-cert-file and --client-key-file go together"},
      {"cert auth without CA", [](TlsOptions& o) { o.trusted_ca_file.clear(); }, TlsRole::kServer,
       absl::StatusCode::kInvalidArgument, "--client-cert-auth needs --client-trusted-ca-file"},
      {"garbage certificate", [&](TlsOptions& o) { o.cert_file = garbage; }, TlsRole::kServer,
       absl::StatusCode::kInvalidArgument,
       "--client-cert-file " + garbage + ": holds no PEM certificate"},
      {"garbage key", [&](TlsOptions& o) { o.key_file = garbage; }, TlsRole::kServer,
       absl::StatusCode::kInvalidArgument,
       "--client-key-file " + garbage + ": holds no unencrypted PEM private key"},
      {"key of another certificate", [&](TlsOptions& o) { o.key_file = other.key_file; },
       TlsRole::kServer, absl::StatusCode::kInvalidArgument,
       "the key in --client-key-file " + other.key_file +
           " does not match the certificate in --client-cert-file " + good.cert_file},
      {"CA file without certificates", [&](TlsOptions& o) { o.trusted_ca_file = garbage; },
       TlsRole::kServer, absl::StatusCode::kInvalidArgument,
       "--client-trusted-ca-file " + garbage + ": holds no PEM certificate"},
      {"expired certificate",
       [&](TlsOptions& o) {
         o.cert_file = expired.cert_file;
         o.key_file = expired.key_file;
       },
       TlsRole::kServer, absl::StatusCode::kFailedPrecondition,
       "the certificate in --client-cert-file " + expired.cert_file + " expired at"},
      {"certificate not yet valid",
       [&](TlsOptions& o) {
         o.cert_file = future.cert_file;
         o.key_file = future.key_file;
       },
       TlsRole::kServer, absl::StatusCode::kFailedPrecondition, "is not valid before"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    TlsOptions options{.cert_file = good.cert_file,
                       .key_file = good.key_file,
                       .trusted_ca_file = good.ca_file,
                       .require_peer_certificate = true,
                       .names = TlsSettingNames::ForPort("client")};
    c.change(options);
    EXPECT_THAT(ValidateTlsOptions(options, c.role, absl::Now()), StatusIs(c.code, c.message));
  }
}

TEST(TlsOptions, MaterialHoldsTheChainKeyAndCas) {
  const std::string dir = ::stead::testing::MakeTempDir();
  TestCertificateAuthority ca("stead test CA");
  const TestPemFiles files = WritePemFiles(dir, "server", ca.Issue({}), ca);
  ASSERT_OK_AND_ASSIGN(TlsMaterial material, LoadTlsMaterial({.cert_file = files.cert_file,
                                                              .key_file = files.key_file,
                                                              .trusted_ca_file = files.ca_file},
                                                             TlsRole::kServer, absl::Now()));
  EXPECT_EQ(material.certificate_chain.size(), 1u);
  EXPECT_NE(material.private_key, nullptr);
  EXPECT_EQ(material.trusted_cas.size(), 1u);
}

}  // namespace
}  // namespace stead::wire
