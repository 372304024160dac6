#include "wire/tls_verify.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/x509v3.h>

#include <ctime>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace stead::wire {
namespace {

std::string Asn1String(const ASN1_STRING* text) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(text)),
                     static_cast<size_t>(ASN1_STRING_length(text)));
}

// An IP SAN (4 or 16 raw bytes) in text form.
std::string IpText(const ASN1_OCTET_STRING* address) {
  char text[INET6_ADDRSTRLEN] = {};
  const int length = ASN1_STRING_length(address);
  const int family = length == 4 ? AF_INET : length == 16 ? AF_INET6 : 0;
  if (family == 0 ||
      inet_ntop(family, ASN1_STRING_get0_data(address), text, sizeof(text)) == nullptr) {
    return "(malformed IP address)";
  }
  return text;
}

std::string CommonName(X509* certificate) {
  X509_NAME* subject = X509_get_subject_name(certificate);
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return "";
  return Asn1String(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index)));
}

}  // namespace

bool IsIpAddress(absl::string_view host) {
  const std::string text(host);
  unsigned char address[16];
  return inet_pton(AF_INET, text.c_str(), address) == 1 ||
         inet_pton(AF_INET6, text.c_str(), address) == 1;
}

absl::Status CheckCertificateNamesHost(X509* certificate, absl::string_view host) {
  const std::string text(host);
  const int matched = IsIpAddress(host) ? X509_check_ip_asc(certificate, text.c_str(), 0)
                                        : X509_check_host(certificate, text.data(), text.size(),
                                                          X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS |
                                                              X509_CHECK_FLAG_NEVER_CHECK_SUBJECT,
                                                          nullptr);
  if (matched == 1) return absl::OkStatus();
  const PeerIdentity identity = IdentityOf(certificate);
  std::vector<std::string> names = identity.dns_names;
  names.insert(names.end(), identity.ip_addresses.begin(), identity.ip_addresses.end());
  return absl::FailedPreconditionError(
      absl::StrCat("the certificate does not name ", host, " (it names ",
                   names.empty() ? "no DNS name or IP address" : absl::StrJoin(names, ", "),
                   "): issue it with ", host, " as a subject alternative name"));
}

PeerIdentity IdentityOf(X509* certificate) {
  PeerIdentity identity;
  identity.common_name = CommonName(certificate);
  using Names = STACK_OF(GENERAL_NAME);
  std::unique_ptr<Names, void (*)(Names*)> names(
      static_cast<Names*>(X509_get_ext_d2i(certificate, NID_subject_alt_name, nullptr, nullptr)),
      [](Names* stack) { GENERAL_NAMES_free(stack); });
  if (names == nullptr) return identity;
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    switch (name->type) {
      case GEN_DNS:
        identity.dns_names.push_back(Asn1String(name->d.dNSName));
        break;
      case GEN_URI:
        identity.uris.push_back(Asn1String(name->d.uniformResourceIdentifier));
        break;
      case GEN_EMAIL:
        identity.emails.push_back(Asn1String(name->d.rfc822Name));
        break;
      case GEN_IPADD:
        identity.ip_addresses.push_back(IpText(name->d.iPAddress));
        break;
      default:
        break;  // other name forms carry no identity stead uses
    }
  }
  return identity;
}

std::string DescribeCertificate(X509* certificate) {
  std::string serial = "?";
  if (BIGNUM* number = ASN1_INTEGER_to_BN(X509_get0_serialNumber(certificate), nullptr)) {
    if (char* hex = BN_bn2hex(number)) {
      serial = absl::StrCat("0x", hex);
      OPENSSL_free(hex);
    }
    BN_free(number);
  }
  return absl::StrCat("CN=", CommonName(certificate), ", serial ", serial, ", valid until ",
                      FormatCertificateTime(X509_get0_notAfter(certificate)));
}

std::string FormatCertificateTime(const ASN1_TIME* time) {
  std::tm parts{};
  if (ASN1_TIME_to_tm(time, &parts) != 1) return "(unreadable time)";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromTM(parts, absl::UTCTimeZone()),
                          absl::UTCTimeZone());
}

}  // namespace stead::wire
