// The one place Boost.Asio is included. Everything in stead that needs Asio includes
// this header instead of <boost/asio.hpp>.
#ifndef STEAD_BASE_ASIO_H_
#define STEAD_BASE_ASIO_H_

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>;
// g++ 12 in C++20 mode does not pull it in transitively.
#include <utility>

#include <boost/asio.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#endif  // STEAD_BASE_ASIO_H_
