#include "wire/tls_verify.h"

#include <openssl/bio.h>
#include <openssl/pem.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_certificates.h"
#include "wire/tls_options.h"

namespace stead::wire {
namespace {

using ::stead::testing::StatusIs;
using ::stead::testing::TestCertificateAuthority;

X509Pointer ParsePem(const std::string& pem) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(
      BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), &BIO_free);
  return X509Pointer(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

// Host matching as RFC 6125 allows, done by OpenSSL: a wildcard covers exactly one
// left-most label, IP addresses match IP SANs only, the CN is never a host name.
TEST(CheckCertificateNamesHost, MatchesDnsWildcardAndIpNames) {
  TestCertificateAuthority ca("stead test CA");
  X509Pointer certificate =
      ParsePem(ca.Issue({.common_name = "cn.example",
                         .dns_names = {"*.stead.default.svc.cluster.local", "stead-0.local"},
                         .ip_addresses = {"127.0.0.1", "::1"}})
                   .certificate_pem);
  ASSERT_NE(certificate, nullptr);
  const struct {
    std::string host;
    bool want;
  } cases[] = {
      {"stead-0.local", true},
      {"STEAD-0.LOCAL", true},
      {"stead-1.local", false},
      {"stead-2.stead.default.svc.cluster.local", true},
      {"a.stead-2.stead.default.svc.cluster.local", false},
      {"stead.default.svc.cluster.local", false},
      {"127.0.0.1", true},
      {"::1", true},
      {"127.0.0.2", false},
      {"cn.example", false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.host);
    const absl::Status status = CheckCertificateNamesHost(certificate.get(), c.host);
    if (c.want) {
      EXPECT_OK(status);
    } else {
      EXPECT_THAT(status, StatusIs(absl::StatusCode::kFailedPrecondition,
                                   "the certificate does not name " + c.host +
                                       " (it names *.stead.default.svc.cluster.local, "
                                       "stead-0.local, 127.0.0.1, ::1)"));
    }
  }
}

TEST(IdentityOf, GivesCommonNameAndSubjectAlternativeNames) {
  TestCertificateAuthority ca("stead test CA");
  X509Pointer certificate = ParsePem(
      ca.Issue(
            {.common_name = "alice", .dns_names = {"alice.example"}, .ip_addresses = {"10.0.0.7"}})
          .certificate_pem);
  ASSERT_NE(certificate, nullptr);
  PeerIdentity want;
  want.common_name = "alice";
  want.dns_names = {"alice.example"};
  want.ip_addresses = {"10.0.0.7"};
  EXPECT_EQ(IdentityOf(certificate.get()), want);
}

TEST(DescribeCertificate, NamesSubjectSerialAndExpiry) {
  TestCertificateAuthority ca("stead test CA");
  X509Pointer certificate = ParsePem(ca.Issue({.common_name = "stead-0",
                                               .not_after = absl::FromUnixSeconds(1900000000),
                                               .serial = 31})
                                         .certificate_pem);
  ASSERT_NE(certificate, nullptr);
  EXPECT_EQ(DescribeCertificate(certificate.get()),
            "CN=stead-0, serial 0x1F, valid until 2030-03-17T17:46:40Z");
}

}  // namespace
}  // namespace stead::wire
