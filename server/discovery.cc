#include "server/discovery.h"

#include <functional>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/asio.h"
#include "base/status_macros.h"
#include "server/frame.h"
#include "wire/stream.h"

namespace stead::server {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

// Discovery answers are small; a bigger frame is not one.
constexpr uint32_t kMaxDiscoveryFrameBytes = 1 << 20;

}  // namespace

absl::StatusOr<pb::DiscoveryResponse> AskPeer(const HostPort& address,
                                              const pb::DiscoveryRequest& request,
                                              absl::Duration timeout,
                                              const std::shared_ptr<wire::TlsContextProvider>& tls) {
  pb::PeerFrame question;
  *question.mutable_discovery_request() = request;
  std::string out;
  if (absl::Status framed = AppendFrame(question, kMaxDiscoveryFrameBytes, &out); !framed.ok()) {
    return framed;
  }

  // A private io_context: the asker is the bootstrap thread, which has nothing else to
  // do, and the deadline is simply how long this context may run.
  asio::io_context io;
  tcp::resolver resolver(io);
  wire::Stream socket(tcp::socket(io), tls);
  FrameReader reader(kMaxDiscoveryFrameBytes);
  std::string buffer(4096, '\0');
  std::optional<absl::StatusOr<pb::DiscoveryResponse>> result;
  auto fail = [&](const std::string& what, const error_code& ec) {
    if (!result) result = absl::UnavailableError(absl::StrCat(what, ": ", ec.message()));
  };

  std::function<void()> read_more = [&] {
    absl::StatusOr<std::optional<absl::string_view>> payload = reader.Next();
    if (!payload.ok()) {
      result = payload.status();
      return;
    }
    if (payload->has_value()) {
      pb::PeerFrame answer;
      if (absl::Status parsed = ParseFramePayload(**payload, "discovery answer", &answer);
          !parsed.ok()) {
        result = parsed;
      } else if (!answer.has_discovery_response()) {
        result = absl::InvalidArgumentError("the peer answered with another frame");
      } else {
        result = std::move(*answer.mutable_discovery_response());
      }
      return;
    }
    socket.async_read_some(asio::buffer(buffer), [&](const error_code& ec, size_t n) {
      if (ec && ec != asio::error::eof) {
        if (!result) result = Annotate(socket.DescribeError(ec), "read answer");
        return;
      }
      if (ec) return fail("read answer", ec);
      reader.Append(absl::string_view(buffer.data(), n));
      read_more();
    });
  };

  resolver.async_resolve(
      address.host, std::to_string(address.port),
      [&](const error_code& resolved, const tcp::resolver::results_type& endpoints) {
        if (resolved) return fail(absl::StrCat("resolve ", address.host), resolved);
        asio::async_connect(socket.socket(), endpoints, [&](const error_code& connected,
                                                            const tcp::endpoint&) {
          if (connected) return fail("connect", connected);
          // Under TLS the peer's certificate must name the host asked.
          socket.AsyncClientHandshake(address.host, timeout, [&](absl::Status handshake) {
            if (!handshake.ok()) {
              if (!result) result = Annotate(handshake, "TLS handshake");
              return;
            }
            asio::async_write(socket, asio::buffer(out), [&](const error_code& written, size_t) {
              if (written) return fail("send question", written);
              read_more();
            });
          });
        });
      });
  io.run_for(absl::ToChronoNanoseconds(timeout));
  if (!result) {
    return absl::UnavailableError(
        absl::StrCat("no answer from ", address.ToString(), " within ", absl::FormatDuration(timeout)));
  }
  if (!result->ok()) return Annotate(result->status(), absl::StrCat("ask ", address.ToString()));
  return std::move(*result);
}

}  // namespace stead::server
