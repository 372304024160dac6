// Checks on a peer's certificate beyond its chain (which OpenSSL verifies during the
// handshake against the trusted CA): does it name the host we expect, and who is it.
//
// Names are matched by OpenSSL (X509_check_host, X509_check_ip_asc), never parsed
// here: a DNS name matches a DNS subject alternative name, with a wildcard only as the
// whole left-most label ("*.stead.default.svc" matches "stead-0.stead.default.svc" but
// neither "a.b.stead.default.svc" nor "stead.default.svc"), as RFC 6125 allows; an IP
// address matches an IP subject alternative name. The subject's common name is never
// used as a host name (RFC 6125 §6.4.4 allows it only without DNS names; modern
// clients have dropped it).
#ifndef STEAD_WIRE_TLS_VERIFY_H_
#define STEAD_WIRE_TLS_VERIFY_H_

#include <openssl/x509.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace stead::wire {

// True if `host` is an IPv4 or IPv6 address rather than a DNS name.
bool IsIpAddress(absl::string_view host);

// OK if `certificate` names `host` (a DNS name, or an IP address in text form);
// otherwise FailedPrecondition saying which names the certificate holds.
absl::Status CheckCertificateNamesHost(X509* certificate, absl::string_view host);

// Who a verified certificate says its holder is: the input of authorisation.
struct PeerIdentity {
  std::string common_name;             // the subject's CN; empty without one
  std::vector<std::string> dns_names;  // DNS subject alternative names
  std::vector<std::string> uris;       // URI SANs (e.g. SPIFFE IDs)
  std::vector<std::string> emails;     // email SANs
  std::vector<std::string> ip_addresses;

  friend bool operator==(const PeerIdentity&, const PeerIdentity&) = default;
};

// The identity in `certificate`. Call it only on a certificate the handshake verified.
PeerIdentity IdentityOf(X509* certificate);

// An ASN1 time of a certificate as "2027-01-01T00:00:00Z".
std::string FormatCertificateTime(const ASN1_TIME* time);

// "CN=stead-0, serial 0x1f, valid until 2027-01-01T00:00:00Z" for log lines.
std::string DescribeCertificate(X509* certificate);

}  // namespace stead::wire

#endif  // STEAD_WIRE_TLS_VERIFY_H_
