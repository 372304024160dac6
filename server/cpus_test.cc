#include "server/cpus.h"

#include "gtest/gtest.h"

namespace stead::server {
namespace {

// Goal: a cgroup's CPU quota caps the CPUs counted, rounded up, within 1..affinity.
TEST(CpusAllowedByQuota, RoundsTheQuotaUpWithinTheAffinity) {
  EXPECT_EQ(CpusAllowedByQuota("max 100000\n", 16), 16) << "no quota";
  EXPECT_EQ(CpusAllowedByQuota("200000 100000\n", 16), 2);
  EXPECT_EQ(CpusAllowedByQuota("150000 100000", 16), 2) << "1.5 CPUs round up";
  EXPECT_EQ(CpusAllowedByQuota("50000 100000", 16), 1) << "half a CPU is one thread's worth";
  EXPECT_EQ(CpusAllowedByQuota("800000 100000", 4), 4) << "never above the affinity";
  for (const char* unreadable : {"", "garbage", "100000", "-1 100000", "100000 0", "1 2 3"}) {
    EXPECT_EQ(CpusAllowedByQuota(unreadable, 6), 6) << "'" << unreadable << "'";
  }
}

// Goal: a member runs half its CPUs' worth of io threads, at least one, at most eight.
TEST(DefaultIoThreads, HalfTheCpusFromOneToEight) {
  EXPECT_EQ(DefaultIoThreads(1), 1);
  EXPECT_EQ(DefaultIoThreads(2), 1);
  EXPECT_EQ(DefaultIoThreads(3), 1);
  EXPECT_EQ(DefaultIoThreads(4), 2);
  EXPECT_EQ(DefaultIoThreads(16), 8);
  EXPECT_EQ(DefaultIoThreads(96), 8);
}

TEST(AvailableCpus, IsAtLeastOne) { EXPECT_GE(AvailableCpus(), 1); }

}  // namespace
}  // namespace stead::server
