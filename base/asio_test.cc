// The shared Asio header must compile on its own under C++20 and run a coroutine.
#include "base/asio.h"

#include "gtest/gtest.h"

namespace stead {
namespace {

namespace asio = boost::asio;

asio::awaitable<int> AddLater(int a, int b) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  timer.expires_after(std::chrono::milliseconds(1));
  boost::system::error_code error;
  co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, error));
  co_return error ? -1 : a + b;
}

TEST(Asio, CoroutineRunsToCompletion) {
  asio::io_context io;
  int result = 0;
  asio::co_spawn(io, AddLater(40, 2), [&result](std::exception_ptr error, int value) {
    ASSERT_FALSE(error);
    result = value;
  });
  io.run();
  EXPECT_EQ(result, 42);
}

}  // namespace
}  // namespace stead
