// How many CPUs this process may use, and how many io threads a member runs on them.
//
// In a container the CPUs a process sees are not the CPUs it may use: the cgroup's
// quota (cpu.max, a Kubernetes limits.cpu) caps the time it gets, whatever the number
// of cores. More threads than that only adds context switches: on a member the io
// threads, the applier and the WAL writer wake each other for every batch of writes.
#ifndef STEAD_SERVER_CPUS_H_
#define STEAD_SERVER_CPUS_H_

#include "absl/strings/string_view.h"

namespace stead::server {

// The CPUs `cpus` (the affinity count) allow under the cgroup v2 `cpu.max` contents
// ("max 100000", or "<quota> <period>" in microseconds): the quota rounded up to whole
// CPUs, at least 1 and at most `cpus`. Contents it cannot read leave `cpus`.
int CpusAllowedByQuota(absl::string_view cpu_max, int cpus);

// The CPUs this process may run on (sched_getaffinity), capped by its cgroup's quota
// (/sys/fs/cgroup/cpu.max) when there is one; at least 1.
int AvailableCpus();

// The io threads a member runs with `cpus` available, when --io-threads does not say:
// half of them, 1 to 8. The raft strand, the client and peer connections and the HTTP
// port share them; the applier and the WAL have threads of their own.
int DefaultIoThreads(int cpus);

}  // namespace stead::server

#endif  // STEAD_SERVER_CPUS_H_
