// The snapshot: every original value apply is about to change, kept in
// <state_dir>/snapshot.json until rollback has restored it. Written crash-safely (a
// temporary file, fsync, rename over the old one, fsync of the directory), so after a
// kill -9 or a power cut the file is either the previous complete snapshot or the new one.
// A lock file in the same directory (flock) keeps two applies or rollbacks apart; the
// kernel drops it when its holder dies.
#pragma once

#include <string>
#include <vector>

#include "axon/tuning/tuning.h"

#include "knobs.h"

namespace axon::tuning {

struct SnapshotEntry {
  Knob knob;
  std::string original;
};

struct Snapshot {
  static constexpr int kFormat = 1;
  std::string profile;                 // the profile applied last
  std::string root;                    // the root prefix it was taken under
  std::string netns;                   // "net:[inode]" of the apply
  std::string state;                   // "applying" until apply finished, then "applied"
  std::string updated;                 // UTC time of the last write
  std::vector<SnapshotEntry> entries;  // in the order the knobs were first changed

  [[nodiscard]] const SnapshotEntry* find(const std::string& key) const;
  [[nodiscard]] bool has_netns_entries() const;
};

std::string snapshot_path(const Options& options);

// nullopt when there is no snapshot; an error when it exists but cannot be read.
TResult<std::optional<Snapshot>> load_snapshot(const Options& options);
TResult<Ok> save_snapshot(const Options& options, const Snapshot& snapshot);
TResult<Ok> remove_snapshot(const Options& options);

// Holds the state directory's lock for its lifetime.
class StateLock {
 public:
  static TResult<StateLock> acquire(const Options& options);
  StateLock(StateLock&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  StateLock& operator=(StateLock&&) = delete;
  StateLock(const StateLock&) = delete;
  ~StateLock();

 private:
  explicit StateLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace axon::tuning
