// The data plane's half of GET /v1/top: per-lcore counters, drops and BUSY by reason and the
// latency histograms, read from its stats segment. One job, no daemon state, so it is tested
// with a hand-made stats file; the daemon adds the workers and the link status (top.cc).
#pragma once

#include "axon/controlplane/model.h"
#include "axon/dataplane/stats_reader.h"

namespace axon::controlplane {

void fill_top_from_stats(TopSnapshot& top, const dataplane::StatsReader& stats);

}  // namespace axon::controlplane
