// Small file helpers the control plane's components share (state, runtime and log files).
#pragma once

#include <sys/types.h>

#include <string>

namespace axon::controlplane {

// mkdir -p with `mode` for the directories it creates; false with errno set on failure.
bool make_dirs(const std::string& path, mode_t mode);

// Writes `text` to path atomically (temp file, fsync, rename): a crash leaves either the old
// or the new file. False with errno set on failure.
bool write_atomically(const std::string& path, const std::string& text, mode_t mode);

}  // namespace axon::controlplane
