// Worker identity rules: the per-slot uid range and the user and command allowlists (see
// worker_identity.h for why they exist).
#include "axon/controlplane/worker_identity.h"

#include <pwd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>

#include "axon/controlplane/model.h"

namespace axon::controlplane {
namespace {

std::optional<std::uint64_t> parse_number(std::string_view text) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

// A path the allowlist can judge lexically: absolute, no "." or ".." components, no "//".
bool is_plain_path(const std::string& path) {
  if (path.empty() || path[0] != '/') return false;
  std::filesystem::path p(path);
  for (const auto& part : p.relative_path()) {
    if (part == "." || part == ".." || part.empty()) return false;
  }
  return path.find("//") == std::string::npos;
}

bool command_allowed(const std::string& command, const std::vector<std::string>& allowed) {
  if (!is_plain_path(command)) return false;
  return std::any_of(allowed.begin(), allowed.end(), [&](const std::string& entry) {
    if (!entry.empty() && entry.back() == '/') return command.size() > entry.size() && command.rfind(entry, 0) == 0;
    return command == entry;
  });
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out.empty() ? "none" : out;
}

}  // namespace

Result<UidRange, IdentityError> parse_uid_range(const std::string& text) {
  auto dash = text.find('-');
  if (dash == std::string::npos) {
    return make_error(IdentityError::invalid_range,
                      std::string("worker_uids must look like \"61000-61999\" (first-last), got '" + text + "'"));
  }
  auto first = parse_number(std::string_view(text).substr(0, dash));
  auto last = parse_number(std::string_view(text).substr(dash + 1));
  if (!first || !last) {
    return make_error(IdentityError::invalid_range,
                      std::string("worker_uids must look like \"61000-61999\" (first-last), got '" + text + "'"));
  }
  if (*first == 0 || *first > *last || *last > 0x7fffffffu) {
    return make_error(IdentityError::invalid_range,
                      std::string("worker_uids '" + text +
                                  "' must be a range of uids between 1 and 2147483647 with first <= last (uid 0 is "
                                  "root and never a worker uid)"));
  }
  return UidRange{uid_t(*first), uid_t(*last)};
}

std::optional<uid_t> uid_for_slot(const UidRange& range, std::size_t slot_index) noexcept {
  if (range.empty() || slot_index >= range.size()) return std::nullopt;
  return uid_t(range.first + slot_index);
}

Result<WorkerIdentity, IdentityError> identity_for(const AgentSpec& agent, const WorkerPolicy& policy,
                                                   std::size_t slot_index) {
  if (!agent.user.empty()) return WorkerIdentity{agent.user, std::nullopt};
  if (policy.worker_uids.empty()) return WorkerIdentity{policy.worker_user, std::nullopt};
  auto uid = uid_for_slot(policy.worker_uids, slot_index);
  if (!uid) {
    return make_error(IdentityError::range_too_small,
                      "worker_uids " + std::to_string(policy.worker_uids.first) + "-" +
                          std::to_string(policy.worker_uids.last) + " has " +
                          std::to_string(policy.worker_uids.size()) + " uid(s) but the data plane has slot number " +
                          std::to_string(slot_index + 1) + "; widen worker_uids to at least worker_slots uids");
  }
  return WorkerIdentity{std::string(), uid};
}

Result<Owner, IdentityError> owner_of(const WorkerIdentity& identity) {
  if (identity.uid) return Owner{*identity.uid, gid_t(*identity.uid)};
  if (identity.user.empty()) return Owner{};
  std::vector<char> buffer(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (getpwnam_r(identity.user.c_str(), &pw, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) {
    return make_error(IdentityError::no_such_user, "no such user '" + identity.user + "'");
  }
  return Owner{pw.pw_uid, pw.pw_gid};
}

bool is_root_user(const std::string& user) {
  if (user.empty() || user == "root") return true;
  std::vector<char> buffer(16384);
  passwd pw{};
  passwd* found = nullptr;
  return getpwnam_r(user.c_str(), &pw, buffer.data(), buffer.size(), &found) == 0 && found != nullptr && pw.pw_uid == 0;
}

std::string check_worker_identity(const AgentSpec& agent, const WorkerPolicy& policy) {
  const std::string who = "agent '" + agent.name + "': ";
  const bool root_listed =
      std::find(policy.allowed_users.begin(), policy.allowed_users.end(), "root") != policy.allowed_users.end();
  if (!agent.user.empty()) {
    // The configured default is the operator's own choice; any other user must be listed.
    bool listed =
        agent.user == policy.worker_user ||
        std::find(policy.allowed_users.begin(), policy.allowed_users.end(), agent.user) != policy.allowed_users.end();
    if (!listed) {
      return who + "user '" + agent.user + "' is not allowed (allowed: " + join(policy.allowed_users) +
             "); add it to allowed_worker_users in the control plane's [controlplane] config";
    }
    if (is_root_user(agent.user) && !root_listed) {
      return who + "user '" + agent.user +
             "' is root; workers never run as root unless allowed_worker_users lists \"root\"";
    }
  } else if (policy.worker_uids.empty() && is_root_user(policy.worker_user) && !root_listed) {
    return who + "would run as root (worker_user is " +
           (policy.worker_user.empty() ? std::string("empty") : "'" + policy.worker_user + "'") +
           " and no worker_uids range is set); set worker_uids or worker_user, or list \"root\" in "
           "allowed_worker_users";
  }
  const std::string& command = agent.command.empty() ? std::string() : agent.command[0];
  if (!command_allowed(command, policy.allowed_commands)) {
    return who + "command '" + command + "' is not allowed (allowed: " + join(policy.allowed_commands) +
           "); add its path, or a directory ending in '/', to allowed_worker_commands in the control plane's "
           "[controlplane] config";
  }
  return {};
}

}  // namespace axon::controlplane
