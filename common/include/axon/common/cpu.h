// CPU placement helpers shared by the data plane, the benchmarks and the workers.
#pragma once

#include <string>

#include "axon/common/result.h"

namespace axon {

enum class CpuError { invalid_cpu, affinity_failed };

// Pins the calling thread to one CPU.
Result<Ok, CpuError> pin_this_thread(int cpu);

// Number of CPUs this process may run on.
int online_cpus() noexcept;

}  // namespace axon
