// Thread pinning with sched_setaffinity.
#include "axon/common/cpu.h"

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <cstring>

namespace axon {

Result<Ok, CpuError> pin_this_thread(int cpu) {
  if (cpu < 0 || cpu >= CPU_SETSIZE) {
    return make_error(CpuError::invalid_cpu, "cpu " + std::to_string(cpu) + " is out of range; pick one from 0.." +
                                                 std::to_string(online_cpus() - 1));
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set); rc != 0) {
    return make_error(CpuError::affinity_failed, "cannot pin to cpu " + std::to_string(cpu) + ": " + std::strerror(rc) +
                                                     "; check the cpuset this process runs in");
  }
  return Ok{};
}

int online_cpus() noexcept {
  return int(sysconf(_SC_NPROCESSORS_ONLN));
}

}  // namespace axon
