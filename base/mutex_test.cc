#include "base/mutex.h"

#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace stead {
namespace {

TEST(Mutex, SerialisesIncrementsFromManyThreads) {
  Mutex mu;
  int counter = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        MutexLock lock(&mu);
        ++counter;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  MutexLock lock(&mu);
  EXPECT_EQ(counter, 40000);
}

TEST(CondVar, WakesAWaiterOnceTheConditionHolds) {
  Mutex mu;
  CondVar cv;
  bool ready = false;
  std::thread producer([&] {
    MutexLock lock(&mu);
    ready = true;
    cv.SignalAll();
  });
  {
    MutexLock lock(&mu);
    // Bounded: a lost wake-up fails the test instead of hanging it.
    for (int i = 0; i < 100 && !ready; ++i) cv.WaitWithTimeout(&mu, absl::Milliseconds(100));
    EXPECT_TRUE(ready);
  }
  producer.join();
}

TEST(CondVar, WaitWithTimeoutReportsExpiry) {
  Mutex mu;
  CondVar cv;
  MutexLock lock(&mu);
  // Nobody signals, so within a few tries (spurious wake-ups aside) the wait times out.
  bool timed_out = false;
  for (int i = 0; i < 100 && !timed_out; ++i) timed_out = cv.WaitWithTimeout(&mu, absl::Milliseconds(1));
  EXPECT_TRUE(timed_out);
}

}  // namespace
}  // namespace stead
