// Boost.Asio's TLS streams, on top of base/asio.h. Only wire/ and what links stead::wire
// include this: it needs OpenSSL's headers and, once used, libssl.
#ifndef STEAD_WIRE_ASIO_SSL_H_
#define STEAD_WIRE_ASIO_SSL_H_

#include <boost/asio/ssl.hpp>

#include "base/asio.h"

#endif  // STEAD_WIRE_ASIO_SSL_H_
