#include "server/auth_token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace stead::server {
namespace {

constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;
constexpr size_t kMacBytes = 32;

absl::StatusOr<std::string> Pbkdf2(absl::string_view password, absl::string_view salt,
                                   uint32_t iterations) {
  std::string out(kHashBytes, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha256(),
                        static_cast<int>(out.size()),
                        reinterpret_cast<unsigned char*>(out.data())) != 1) {
    return absl::InternalError("PBKDF2 failed");
  }
  return out;
}

std::string Mac(absl::string_view data, absl::string_view secret) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), mac, &length);
  return std::string(reinterpret_cast<const char*>(mac), length);
}

bool EqualInConstantTime(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

absl::StatusOr<std::string> RandomBytes(size_t size) {
  std::string out(size, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(size)) != 1) {
    return absl::InternalError("no random bytes from the system");
  }
  return out;
}

absl::StatusOr<pb::PasswordHash> HashPassword(absl::string_view password, uint32_t iterations) {
  if (iterations == 0) return absl::InvalidArgumentError("PBKDF2 needs at least one iteration");
  pb::PasswordHash hash;
  absl::StatusOr<std::string> salt = RandomBytes(kSaltBytes);
  if (!salt.ok()) return salt.status();
  absl::StatusOr<std::string> derived = Pbkdf2(password, *salt, iterations);
  if (!derived.ok()) return derived.status();
  hash.set_salt(*std::move(salt));
  hash.set_hash(*std::move(derived));
  hash.set_iterations(iterations);
  return hash;
}

bool VerifyPassword(absl::string_view password, const pb::PasswordHash& hash) {
  if (hash.iterations() == 0 || hash.salt().empty() || hash.hash().empty()) return false;
  absl::StatusOr<std::string> derived = Pbkdf2(password, hash.salt(), hash.iterations());
  return derived.ok() && EqualInConstantTime(*derived, hash.hash());
}

std::string SignToken(const pb::AuthTokenBody& body, absl::string_view secret) {
  std::string token = body.SerializeAsString();
  token += Mac(token, secret);
  return token;
}

absl::StatusOr<pb::AuthTokenBody> VerifyToken(absl::string_view token, absl::string_view secret,
                                              absl::Time now) {
  const absl::Status refused =
      absl::UnauthenticatedError("invalid or expired token: authenticate again");
  if (token.size() <= kMacBytes || secret.empty()) return refused;
  const absl::string_view data = token.substr(0, token.size() - kMacBytes);
  if (!EqualInConstantTime(Mac(data, secret), token.substr(data.size()))) return refused;
  pb::AuthTokenBody body;
  if (!body.ParseFromArray(data.data(), static_cast<int>(data.size()))) return refused;
  if (absl::FromUnixMillis(body.expires_unix_ms()) <= now) return refused;
  return body;
}

}  // namespace stead::server
