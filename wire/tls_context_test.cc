// TlsContextProvider without sockets: which certificate the current context holds as
// the files change, when the files are looked at, what is logged, and that many
// connections may ask for the context while it is being replaced.
#include "wire/tls_context.h"

#include <openssl/ssl.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/log_capture.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_certificates.h"
#include "wire/tls_verify.h"

namespace stead::wire {
namespace {

using ::stead::testing::CapturingLogSink;
using ::stead::testing::ReplaceFile;
using ::stead::testing::StatusIs;
using ::stead::testing::TestCertificate;
using ::stead::testing::TestCertificateAuthority;
using ::stead::testing::TestPemFiles;
using ::stead::testing::WritePemFiles;
using ::testing::HasSubstr;

std::string CommonNameOf(const std::shared_ptr<boost::asio::ssl::context>& context) {
  X509* certificate = SSL_CTX_get0_certificate(context->native_handle());
  return certificate != nullptr ? IdentityOf(certificate).common_name : "(none)";
}

class TlsContextProviderTest : public ::testing::Test {
 protected:
  std::unique_ptr<TlsContextProvider> MakeProvider(TlsReloadOptions reload) {
    absl::StatusOr<std::unique_ptr<TlsContextProvider>> provider = TlsContextProvider::Create(
        {.cert_file = files_.cert_file,
         .key_file = files_.key_file,
         .names = TlsSettingNames::ForPort("peer")},
        TlsRole::kServer, Logger(sink_, LogLevel::kInfo), std::move(reload));
    EXPECT_OK(provider.status());
    return provider.ok() ? *std::move(provider) : nullptr;
  }
  void Install(const TestCertificate& certificate) {
    WritePemFiles(dir_, "server", certificate, ca_);
  }

  const std::string dir_ = ::stead::testing::MakeTempDir();
  TestCertificateAuthority ca_{"stead test CA"};
  const TestPemFiles files_ =
      WritePemFiles(dir_, "server", ca_.Issue({.common_name = "first"}), ca_);
  std::shared_ptr<CapturingLogSink> sink_ = std::make_shared<CapturingLogSink>();
};

TEST_F(TlsContextProviderTest, CreateRefusesBadFilesNamingTheFlag) {
  ReplaceFile(files_.key_file, "garbage");
  EXPECT_THAT(TlsContextProvider::Create({.cert_file = files_.cert_file,
                                          .key_file = files_.key_file,
                                          .names = TlsSettingNames::ForPort("peer")},
                                         TlsRole::kServer, Logger(sink_, LogLevel::kInfo)),
              StatusIs(absl::StatusCode::kInvalidArgument, "--peer-key-file"));
}

// A failed reload keeps the old context and is logged once per distinct failure; a
// context handed out earlier never changes.
TEST_F(TlsContextProviderTest, FailedReloadKeepsTheOldContextAndLogsOncePerFailure) {
  std::unique_ptr<TlsContextProvider> provider = MakeProvider({});
  ASSERT_NE(provider, nullptr);
  const auto first = provider->Current();
  EXPECT_EQ(CommonNameOf(first), "first");
  EXPECT_OK(provider->CheckForChanges());  // unchanged files: nothing to do

  ReplaceFile(files_.cert_file, "garbage");
  EXPECT_THAT(provider->CheckForChanges(),
              StatusIs(absl::StatusCode::kInvalidArgument, "holds no PEM certificate"));
  EXPECT_THAT(provider->CheckForChanges(), ::stead::testing::IsOk());  // same bytes: not retried
  ::unlink(files_.key_file.c_str());
  EXPECT_THAT(provider->CheckForChanges(),
              StatusIs(absl::StatusCode::kInvalidArgument, "--peer-key-file"));
  EXPECT_THAT(provider->CheckForChanges(),
              StatusIs(absl::StatusCode::kInvalidArgument, "--peer-key-file"));
  EXPECT_EQ(provider->Current(), first);

  Install(ca_.Issue({.common_name = "second"}));
  EXPECT_OK(provider->CheckForChanges());
  EXPECT_EQ(CommonNameOf(provider->Current()), "second");
  EXPECT_EQ(CommonNameOf(first), "first");

  EXPECT_THAT(sink_->lines(),
              ::testing::ElementsAre(HasSubstr("W tls_context.cc"),  // garbage certificate
                                     HasSubstr("cannot read it (No such file or directory)"),
                                     HasSubstr("TLS files reloaded: certificate CN=second")));
  EXPECT_THAT(sink_->lines()[0],
              HasSubstr("TLS files not reloaded, still using the previous certificate: "
                        "--peer-cert-file " +
                        files_.cert_file + ": holds no PEM certificate"));
}

// Current() looks at the files only once check_interval has passed on the clock it was
// given, so a busy port reads them at most once per interval.
TEST_F(TlsContextProviderTest, CurrentLooksAtTheFilesOncePerInterval) {
  absl::Time now = absl::Now();
  std::unique_ptr<TlsContextProvider> provider =
      MakeProvider({.check_interval = absl::Seconds(1), .clock = [&now] { return now; }});
  ASSERT_NE(provider, nullptr);
  Install(ca_.Issue({.common_name = "second"}));
  now += absl::Milliseconds(999);
  EXPECT_EQ(CommonNameOf(provider->Current()), "first");
  now += absl::Milliseconds(1);
  EXPECT_EQ(CommonNameOf(provider->Current()), "second");
}

// Many connections ask for the context while the files are replaced again and again:
// every one gets a complete context, and the last files win. Run under TSan.
TEST_F(TlsContextProviderTest, ConcurrentConnectionsDuringRotationAlwaysGetAContext) {
  std::unique_ptr<TlsContextProvider> provider =
      MakeProvider({.check_interval = absl::ZeroDuration()});
  ASSERT_NE(provider, nullptr);
  constexpr int kThreads = 4;
  constexpr int kRotations = 10;
  std::vector<TestCertificate> certificates;
  for (int i = 0; i < kRotations; ++i) {
    certificates.push_back(ca_.Issue({.common_name = "rotation " + std::to_string(i)}));
  }
  std::atomic<bool> stop{false};
  std::atomic<int> without_certificate{0};
  std::vector<std::thread> connections;
  for (int t = 0; t < kThreads; ++t) {
    connections.emplace_back([&] {
      for (int i = 0; i < 100000 && !stop.load(); ++i) {
        if (CommonNameOf(provider->Current()) == "(none)") without_certificate++;
      }
    });
  }
  for (const TestCertificate& certificate : certificates) Install(certificate);
  stop = true;
  for (std::thread& thread : connections) thread.join();
  // Each rewrite replaces the certificate before the key; a look between the two
  // fails and is retried at the next change, so only the final state is certain.
  EXPECT_OK(provider->CheckForChanges());
  EXPECT_EQ(CommonNameOf(provider->Current()), "rotation 9");
  EXPECT_EQ(without_certificate.load(), 0);
}

}  // namespace
}  // namespace stead::wire
